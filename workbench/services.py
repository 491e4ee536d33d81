"""Every write to workspaces and tabs, and every tab state transition.

Each transition is a conditional update from the states `ALLOWED_TRANSITIONS` permits,
bumps the row's `version`, and records its event in the same transaction. A worker that
loses a race gets False/None back; a user asking for an impossible transition gets
InvalidTransition (409).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils.timezone import now

from core.errors import Conflict, InvalidTransition
from core.events import record_event, record_events
from core.locks import row_locks, workspace_transaction
from core.models import Membership, Workspace
from core.transitions import transition
from sandboxes import services as sandbox_services
from sandboxes.models import Sandbox, SandboxState
from sandboxes.providers.base import ProviderError, ProviderUnavailable, SandboxGone
from sandboxes.selectors import live_sandbox_value, sandbox_live_for_task
from tasks_app import services as task_services
from tasks_app.models import Task
from workbench import workflows
from workbench.models import (
    ALLOWED_TRANSITIONS,
    OPEN_STATES,
    PENDING_STATES,
    TabErrorCode,
    TabState,
    WorkbenchTab,
)
from workbench.selectors import tab_has_prompts_waiting
from workbench.serializers import TabOutputSerializer

if TYPE_CHECKING:
    from collections.abc import Iterable
    from uuid import UUID

    from django.contrib.auth.models import User
    from django.db.models import QuerySet

logger = logging.getLogger(__name__)


# -- workspaces ----------------------------------------------------------------------------


def workspace_create(*, user: User, name: str) -> Workspace:
    """Create a workspace; its creator becomes its owner."""
    with transaction.atomic():
        workspace = Workspace.objects.create(name=name)
        Membership.objects.create(workspace=workspace, user=user, role=Membership.Role.OWNER)
    return workspace


def membership_add(
    *, workspace_id: int, user: User, role: str = Membership.Role.MEMBER
) -> Membership:
    membership, _ = Membership.objects.get_or_create(
        workspace_id=workspace_id, user=user, defaults={"role": role}
    )
    return membership


# -- the transition primitive --------------------------------------------------------------


def _record_tab(tab: WorkbenchTab) -> None:
    record_event(tab.workspace_id, "tab.updated", TabOutputSerializer(tab).data)


def _tab_workspace(tab_id: UUID) -> int | None:
    return WorkbenchTab.objects.filter(pk=tab_id).values_list("workspace_id", flat=True).first()


def _transition(
    *,
    tab_id: UUID,
    to: str,
    sources: Iterable[str] | None = None,
    at_attempt: int | None = None,
    **fields: object,
) -> WorkbenchTab | None:
    """Move one tab to `to` if it is in one of `sources` (and at `at_attempt`); else None."""
    workspace_id = _tab_workspace(tab_id)
    if workspace_id is None:
        return None
    with workspace_transaction(workspace_id):
        rows = WorkbenchTab.objects.filter(pk=tab_id)
        if at_attempt is not None:
            rows = rows.filter(attempt=at_attempt)
        stamp = now()
        updated = transition(
            rows,
            table=ALLOWED_TRANSITIONS,
            to=to,
            sources=sources,
            state_changed_at=stamp,
            updated_at=stamp,
            **fields,
        )
        if updated != 1:
            return None
        tab = WorkbenchTab.objects.get(pk=tab_id)
        _record_tab(tab)
    return tab


def _transition_all(
    *,
    workspace_id: int,
    rows: QuerySet[WorkbenchTab],
    to: str,
    sources: list[str],
    **fields: object,
) -> list[WorkbenchTab]:
    """Move every tab of `rows` that is in one of `sources` to `to` at once; returns them.

    One statement for the change and three for the events, whatever the number of tabs:
    a hand-off or a failed run moves every tab waiting on the sandbox while holding the
    workspace lock, which every other write of the workspace waits for (one at a time it
    was seven round trips a tab, docs/benchmarks.md).
    """
    with workspace_transaction(workspace_id):
        # Under the lock no other write of the workspace runs: the rows read are the rows
        # the update moves.
        ids = list(rows.filter(state__in=sources).values_list("pk", flat=True))
        if not ids:
            return []
        stamp = now()
        transition(
            WorkbenchTab.objects.filter(pk__in=ids),
            table=ALLOWED_TRANSITIONS,
            to=to,
            sources=sources,
            state_changed_at=stamp,
            updated_at=stamp,
            **fields,
        )
        moved = list(WorkbenchTab.objects.filter(pk__in=ids, state=to).order_by("created_at", "pk"))
        record_events(workspace_id, "tab.updated", [TabOutputSerializer(tab).data for tab in moved])
    return moved


def _dispatch_session(tab: WorkbenchTab) -> None:
    """Open the session of a tab whose sandbox is ready, once this transaction commits.

    After commit: a worker could otherwise read the row before it exists, and a rolled-back
    request must dispatch nothing. A failed dispatch is left to the reconciler.
    """
    workflows.dispatch_after_commit(
        workflows.start_session_open, tab_id=tab.pk, attempt=tab.attempt
    )


def _ensure_provisioning(task: Task) -> None:
    """A tab now waits for the task's sandbox: make sure its provisioning run exists.

    One run per task and attempt, however many tabs ask: only the request that creates the
    attempt's sandbox row starts a run; the others' tabs wait as rows, and the run hands
    off to all of them when it ends (sandbox_run). In the caller's transaction.
    """
    sandbox, created = sandbox_services.sandbox_ensure(
        workspace_id=task.workspace_id, task_id=task.pk, provider=task.provider, agent=task.agent
    )
    if created:
        workflows.dispatch_after_commit(workflows.start_sandbox_run, sandbox_id=sandbox.pk)


# -- user actions --------------------------------------------------------------------------


def tab_create(
    *, user: User, task: Task, title: str = "", idempotency_key: str | None = None
) -> tuple[WorkbenchTab, bool]:
    """Insert a placeholder tab and dispatch its chain after commit; never provisions inline.

    Returns (tab, created). A replayed Idempotency-Key returns the first tab, created=False.
    """
    if task.is_archived:
        raise Conflict("the task is archived; open tabs on an active task", code="task_archived")
    if idempotency_key:
        existing = _tab_for_key(task=task, user=user, key=idempotency_key, title=title)
        if existing is not None:
            return existing, False
    try:
        with workspace_transaction(task.workspace_id):
            seen = _tab_create_check(user=user, task=task)
            ready = seen.sandbox_state == SandboxState.READY
            tab = WorkbenchTab.objects.create(
                workspace_id=task.workspace_id,
                task=task,
                created_by=user,
                title=title or f"{task.agent} {seen.tabs_on_task + 1}",
                agent=task.agent,
                state=TabState.PENDING_SESSION_CREATE if ready else TabState.PENDING_PROVISION,
                sandbox_id=seen.sandbox_id if ready else None,
                idempotency_key=idempotency_key or None,
            )
            _record_tab(tab)
            if ready:
                _dispatch_session(tab)
            elif seen.sandbox_id is None:
                _ensure_provisioning(task)
            # else: the task's provisioning run is under way and hands off to this tab too.
    except IntegrityError:
        # Two requests with one Idempotency-Key raced; the unique constraint kept one row.
        existing = _tab_for_key(task=task, user=user, key=idempotency_key or "", title=title)
        if existing is None:
            raise
        return existing, False
    return tab, True


@dataclass(frozen=True)
class _TabCreateView:
    """What tab_create reads under the lock, in one statement."""

    tabs_on_task: int
    sandbox_id: int | None
    sandbox_state: str | None


def _tab_create_check(*, user: User, task: Task) -> _TabCreateView:
    """Refuse a tab on an archived task or over the per-task or per-user limit of open tabs;
    returns the task's tab count (which numbers the new tab's default title) and its live
    sandbox.

    Runs under the workspace lock (workspace_transaction), which already serializes every
    tab write of the task's workspace; the user's row is locked too, because a user's tabs
    span workspaces. Concurrent creations then count one after another, and a burst cannot
    overshoot either limit between count and insert. Every read is one statement after
    both locks (so it sees what committed before them): each statement while holding the
    workspace lock is a round trip every other write of the workspace waits for
    (docs/benchmarks.md).
    """
    # Not type(user): a session-authenticated request.user is a SimpleLazyObject.
    user_model = get_user_model()
    # Evaluated for the lock it takes (exists() would not lock on every backend). SQLite
    # has no row locks: its write transaction already excludes other writers (row_locks).
    if row_locks():
        list(user_model.objects.select_for_update().filter(pk=user.pk).values_list("pk"))
    by_user = (
        WorkbenchTab.objects.filter(created_by=user.pk, state__in=OPEN_STATES)
        .order_by()
        .values("created_by")
        .annotate(n=Count("pk"))
        .values("n")
    )
    archived_at, total, open_on_task, open_by_user, sandbox_id, sandbox_state = (
        Task.objects.filter(pk=task.pk)
        .annotate(
            total=Count("tabs"),
            open=Count("tabs", filter=Q(tabs__state__in=OPEN_STATES)),
            by_user=Coalesce(Subquery(by_user), 0),
            sandbox_id=live_sandbox_value("pk"),
            sandbox_state=live_sandbox_value("state"),
        )
        .values_list("archived_at", "total", "open", "by_user", "sandbox_id", "sandbox_state")
        .get()
    )
    if archived_at is not None:
        # An archive that committed meanwhile closed the task's tabs and destroyed its
        # sandbox; a tab now would start one on an archived task.
        raise Conflict("the task is archived; open tabs on an active task", code="task_archived")
    if open_on_task >= settings.WORKBENCH_MAX_OPEN_TABS_PER_TASK:
        raise Conflict(
            f"this task already has {open_on_task} open tabs (the limit); close some first",
            code="too_many_tabs",
        )
    if open_by_user >= settings.WORKBENCH_MAX_OPEN_TABS_PER_USER:
        raise Conflict(
            f"you already have {open_by_user} open tabs (the limit); close some first",
            code="too_many_tabs_for_user",
        )
    return _TabCreateView(tabs_on_task=total, sandbox_id=sandbox_id, sandbox_state=sandbox_state)


def _tab_for_key(*, task: Task, user: User, key: str, title: str) -> WorkbenchTab | None:
    tab = WorkbenchTab.objects.filter(task=task, created_by=user, idempotency_key=key).first()
    if tab is not None and title and tab.title != title:
        raise Conflict(
            "this Idempotency-Key was already used for a different request",
            code="idempotency_key_reused",
        )
    return tab


def tab_update(
    *,
    tab_id: UUID,
    title: str | None = None,
    draft: str | None = None,
    unread: bool | None = None,
) -> WorkbenchTab:
    """Edit title, draft or unread, in any state but closed (a draft is never lost)."""
    fields: dict[str, object] = {}
    if title is not None:
        fields["title"] = title
    if draft is not None:
        fields["draft"] = draft
    if unread is not None:
        fields["unread"] = unread
    workspace_id = _tab_workspace(tab_id)
    if workspace_id is None:
        raise WorkbenchTab.DoesNotExist(tab_id)
    with workspace_transaction(workspace_id):
        updated = (
            WorkbenchTab.objects.filter(pk=tab_id)
            .exclude(state=TabState.CLOSED)
            .update(updated_at=now(), version=F("version") + 1, **fields)
        )
        if updated != 1:
            raise InvalidTransition(
                "the tab is closed; closed tabs cannot be edited", code="tab_closed"
            )
        tab = WorkbenchTab.objects.get(pk=tab_id)
        _record_tab(tab)
    return tab


def tab_mark_unread(*, tab_id: UUID) -> bool:
    """An agent reply arrived: set unread once (no event when it already was)."""
    with workspace_transaction(_tab_workspace(tab_id) or 0):
        updated = (
            WorkbenchTab.objects.filter(pk=tab_id, unread=False)
            .exclude(state=TabState.CLOSED)
            .update(unread=True, updated_at=now(), version=F("version") + 1)
        )
        if updated:
            _record_tab(WorkbenchTab.objects.get(pk=tab_id))
    return bool(updated)


def tab_close(*, tab_id: UUID) -> WorkbenchTab:
    """Any open state -> closed. Closing a closed tab is a no-op (DELETE is idempotent).

    A session that exists is torn down in the background; one still being created for
    this tab is torn down by its own step when it finds the tab closed.
    """
    tab = _transition(tab_id=tab_id, to=TabState.CLOSED, closed_at=now())
    if tab is None:
        return WorkbenchTab.objects.get(pk=tab_id)
    if tab.acp_server_id and tab.sandbox_id:
        workflows.dispatch_after_commit(workflows.start_session_teardown, tab_id=tab.pk)
    return tab


def tab_retry(*, tab_id: UUID) -> WorkbenchTab:
    """error -> pending_session_create if the task's sandbox is ready, else
    pending_provision (which provisions afresh if the last attempt failed). Same tab id."""
    with workspace_transaction(_tab_workspace(tab_id) or 0):
        tab = WorkbenchTab.objects.select_related("task").get(pk=tab_id)
        if tab.state != TabState.ERROR:
            raise InvalidTransition(
                f"only a tab in error can be retried; this one is {tab.state}",
                code="not_in_error",
            )
        if tab.task.is_archived:
            raise Conflict("the task is archived", code="task_archived")
        sandbox = sandbox_live_for_task(task_id=tab.task_id)
        ready = sandbox is not None and sandbox.state == SandboxState.READY
        same_sandbox = ready and sandbox is not None and tab.sandbox_id == sandbox.pk
        moved = _transition(
            tab_id=tab_id,
            to=TabState.PENDING_SESSION_CREATE if ready else TabState.PENDING_PROVISION,
            sources=[TabState.ERROR],
            at_attempt=tab.attempt,
            attempt=F("attempt") + 1,
            redrives=0,
            session_starts=0,
            error_code="",
            error_message="",
            session_id="",
            # On the same ready sandbox, the failed attempt's session (if its step made one)
            # is closed by the new attempt's session step, or by the teardown if the tab
            # closes first; any other sandbox took its sessions with it.
            acp_server_id=tab.acp_server_id if same_sandbox else "",
            sandbox_id=sandbox.pk if ready and sandbox else None,
        )
        if moved is None:
            raise InvalidTransition("the tab changed meanwhile; reload it", code="conflict")
        if ready:
            _dispatch_session(moved)
        else:
            _ensure_provisioning(tab.task)
    return moved


def task_archive(*, task_id: int) -> Task:
    """Archive at once: close the task's open tabs; destroy its sandbox in the background."""
    workspace_id = Task.objects.values_list("workspace_id", flat=True).get(pk=task_id)
    with workspace_transaction(workspace_id):
        task_services.task_mark_archived(task_id=task_id)
        for tab_id in WorkbenchTab.objects.filter(
            task_id=task_id, state__in=OPEN_STATES
        ).values_list("pk", flat=True):
            tab_close(tab_id=tab_id)
        for sandbox_id in task_sandboxes_to_destroy(task_id=task_id):
            if sandbox_services.sandbox_begin_destroy(sandbox_id=sandbox_id):
                workflows.dispatch_after_commit(
                    workflows.start_sandbox_destroy, sandbox_id=sandbox_id
                )
    return Task.objects.get(pk=task_id)


def task_sandboxes_to_destroy(*, task_id: int) -> list[int]:
    return list(
        Sandbox.objects.filter(task_id=task_id)
        .exclude(state__in=[SandboxState.DESTROYING, SandboxState.DESTROYED])
        .values_list("pk", flat=True)
    )


# -- workflow steps (called by Celery tasks) ----------------------------------------------


@dataclass(frozen=True)
class RunOutcome:
    """What a provisioning run of a sandbox came to; `retry_in` (seconds) when another live
    run holds the lease and this one should look again once that lease could lapse."""

    outcome: str
    retry_in: float | None = None


def sandbox_run(*, sandbox_id: int, owner: str) -> RunOutcome:
    """The task's provisioning run (one per task and attempt, whatever the number of tabs).

    Ready: every tab still waiting on it moves to pending_session_create and its session
    step starts, in the commit that marks the sandbox ready. Failed: every waiting tab
    fails with the cause. Either way the end of a run frees a slot of its workspace's
    share, so the workspace's next queued sandbox starts.
    """
    task_id = Sandbox.objects.filter(pk=sandbox_id).values_list("task_id", flat=True).first()
    if task_id is None:
        return RunOutcome("gone")
    workspace_id = Task.objects.values_list("workspace_id", flat=True).get(pk=task_id)
    result = task_services.task_provision_run(
        sandbox_id=sandbox_id, owner=owner, on_ready=lambda: _hand_off(task_id=task_id)
    )
    if result.outcome == "busy" and result.sandbox is not None:
        expires = result.sandbox.lease_expires_at
        wait = (expires - now()).total_seconds() if expires else 0.0
        return RunOutcome("busy", retry_in=max(wait, 0.0) + 1.0)
    if result.outcome == "ready":
        # Made ready by another run that handed off already, or by this one (which handed
        # off in its commit); tabs that slipped in between are handed off here.
        _hand_off(task_id=task_id)
    if result.outcome == "failed" and result.sandbox is not None:
        logger.info(
            "provisioning sandbox %s failed: %s %s", sandbox_id, result.code, result.message
        )
        with workspace_transaction(workspace_id):
            if sandbox_services.sandbox_fail(
                sandbox_id=result.sandbox.pk,
                fence=result.fence,
                code=result.code,
                message=result.message,
            ):
                tabs_fail_waiting(
                    task_id=task_id,
                    code=TabErrorCode.PROVISION_FAILED,
                    message=f"Provisioning failed at {result.message}",
                )
                _release_after_commit(result.sandbox.pk)
    archived = Task.objects.filter(pk=task_id, archived_at__isnull=False).exists()
    if (
        result.outcome == "gone"
        and archived
        and result.sandbox is not None
        and sandbox_services.sandbox_begin_destroy(sandbox_id=result.sandbox.pk)
    ):
        # Its task was archived after the sandbox was made: freed like the archive's own.
        workflows.dispatch_after_commit(
            workflows.start_sandbox_destroy, sandbox_id=result.sandbox.pk
        )
    if result.outcome in ("ready", "failed", "gone"):
        sandboxes_start_queued(workspace_id=workspace_id)
    return RunOutcome(result.outcome)


def tab_redrive(*, tab_id: UUID, attempt: int) -> None:
    """Start again whatever a pending tab waits on (its message was lost): its session
    step, or its task's provisioning run (made anew if the task has no live sandbox)."""
    tab = (
        WorkbenchTab.objects.select_related("task")
        .filter(pk=tab_id, attempt=attempt, state__in=PENDING_STATES)
        .first()
    )
    if tab is None:
        return
    with workspace_transaction(tab.workspace_id):
        if tab.state == TabState.PENDING_SESSION_CREATE:
            _dispatch_session(tab)
            return
        sandbox = sandbox_live_for_task(task_id=tab.task_id)
        if sandbox is None:
            _ensure_provisioning(tab.task)
        elif sandbox.state == SandboxState.READY:
            _hand_off(task_id=tab.task_id)
        else:
            workflows.dispatch_after_commit(workflows.start_sandbox_run, sandbox_id=sandbox.pk)


def _hand_off(*, task_id: int) -> int:
    """Every tab of the task waiting for provisioning goes on to its session step, now that
    the task's sandbox is ready; returns how many."""
    sandbox = sandbox_live_for_task(task_id=task_id)
    if sandbox is None or sandbox.state != SandboxState.READY:
        return 0
    workspace_id = Task.objects.values_list("workspace_id", flat=True).get(pk=task_id)
    with workspace_transaction(workspace_id):
        moved = _transition_all(
            workspace_id=workspace_id,
            rows=WorkbenchTab.objects.filter(task_id=task_id),
            to=TabState.PENDING_SESSION_CREATE,
            sources=[TabState.PENDING_PROVISION],
            sandbox_id=sandbox.pk,
        )
        for tab in moved:
            _dispatch_session(tab)
    return len(moved)


def sandboxes_start_queued(*, workspace_id: int) -> int:
    """Start the runs of the workspace's queued sandboxes its share has room for."""
    # Under the lock: two runs ending at once must not both start the same queued one.
    with workspace_transaction(workspace_id):
        started = sandbox_services.sandboxes_to_start(workspace_id=workspace_id)
        for sandbox_id in started:
            workflows.dispatch_after_commit(workflows.start_sandbox_run, sandbox_id=sandbox_id)
    return len(started)


def tab_open_session(*, tab_id: UUID, attempt: int) -> None:
    """Chain step 2: give the tab its own agent session in the task's ready sandbox.

    The ACP server id is deterministic per tab and attempt, so a redelivered step reopens
    the same server rather than making a second one.
    """
    tab = WorkbenchTab.objects.filter(pk=tab_id, attempt=attempt).first()
    if tab is None or tab.state not in PENDING_STATES:
        return
    if tab.state == TabState.PENDING_PROVISION:
        sandbox = sandbox_live_for_task(task_id=tab.task_id)
        if sandbox is None or sandbox.state != SandboxState.READY:
            return  # provisioning failed (the tab is in error) or was lost: reconciler's job
        tab = tab_mark_session_pending(tab_id=tab_id, attempt=attempt, sandbox_id=sandbox.pk)
        if tab is None:
            return
    sandbox = tab.sandbox
    if sandbox is None or sandbox.state != SandboxState.READY:
        tab_fail(
            tab_id=tab_id,
            attempt=attempt,
            code=TabErrorCode.SANDBOX_LOST,
            message="The task's sandbox is no longer running; retry to re-provision it.",
        )
        return
    server_id = f"tab-{tab.pk.hex}-{attempt}"
    if tab.acp_server_id and tab.acp_server_id != server_id:
        # An earlier attempt's session (its step died, or it failed after making one):
        # nothing else records it once this attempt's id replaces it.
        try:
            sandbox_services.sandbox_session_close(sandbox=sandbox, server_id=tab.acp_server_id)
        except ProviderError as exc:  # best effort: it must not block the new session
            logger.warning("closing %s's old session failed: %s", tab.pk, exc.message)
    # The intent is recorded before the call: a step that dies after making the session
    # leaves a row that says which server to tear down (at close, or by the reconciler).
    starts = WorkbenchTab.objects.filter(pk=tab_id, attempt=attempt, state__in=PENDING_STATES)
    if not starts.update(session_starts=F("session_starts") + 1, acp_server_id=server_id):
        return  # closed or retried meanwhile
    if tab.session_starts + 1 > settings.WORKBENCH_MAX_SESSION_STARTS:
        tab_fail(
            tab_id=tab_id,
            attempt=attempt,
            code=TabErrorCode.STALLED,
            message=f"Starting the session was interrupted {tab.session_starts} times; "
            "retry to try again.",
        )
        return
    try:
        session_id = sandbox_services.sandbox_session_open(
            sandbox=sandbox, server_id=server_id, agent=tab.agent
        )
    except SandboxGone as exc:
        sandbox_lost(sandbox_id=sandbox.pk, message=exc.message)
        return
    except ProviderUnavailable:
        raise  # transient: the Celery task retries with backoff
    except ProviderError as exc:
        tab_fail(
            tab_id=tab_id,
            attempt=attempt,
            code=TabErrorCode.SESSION_FAILED,
            message=f"Starting the agent session failed: {exc.message}",
        )
        return
    if tab_mark_ready(tab_id=tab_id, attempt=attempt, session_id=session_id, server_id=server_id):
        # Prompts queued before an error and retry go out now that a session exists. Only
        # then: a delivery takes the workspace lock, and a prompt sent from now on (the tab
        # is ready) dispatches its own.
        if tab_has_prompts_waiting(tab_id=tab_id):
            workflows.start_message_delivery(tab_id=tab_id)
        return
    current = WorkbenchTab.objects.filter(pk=tab_id).first()
    if (
        current is not None
        and current.state == TabState.READY
        and current.acp_server_id == server_id
    ):
        return  # a duplicate delivery of this same step won; the session is the tab's
    # Closed (or retried) while the session was being created: tear the late session down.
    sandbox_services.sandbox_session_close(sandbox=sandbox, server_id=server_id)


def tab_session_teardown(*, tab_id: UUID) -> None:
    """Close the agent session of a closed tab, and note that it is gone."""
    tab = (
        WorkbenchTab.objects.select_related("sandbox")
        .filter(pk=tab_id, state=TabState.CLOSED, session_closed_at__isnull=True)
        .first()
    )
    if tab is None or not tab.acp_server_id:
        return
    # A sandbox that is gone or going takes its sessions with it.
    if tab.sandbox is not None and tab.sandbox.state == SandboxState.READY:
        with contextlib.suppress(SandboxGone):
            sandbox_services.sandbox_session_close(sandbox=tab.sandbox, server_id=tab.acp_server_id)
    # Bookkeeping of a closed tab, not a change users see: no version, no event.
    WorkbenchTab.objects.filter(pk=tab_id).update(session_closed_at=now())


# -- workflow transitions ------------------------------------------------------------------


def tab_mark_session_pending(*, tab_id: UUID, attempt: int, sandbox_id: int) -> WorkbenchTab | None:
    """pending_provision -> pending_session_create, attached to the ready sandbox."""
    return _transition(
        tab_id=tab_id,
        to=TabState.PENDING_SESSION_CREATE,
        sources=[TabState.PENDING_PROVISION],
        at_attempt=attempt,
        sandbox_id=sandbox_id,
    )


def tab_mark_ready(*, tab_id: UUID, attempt: int, session_id: str, server_id: str) -> bool:
    """pending_session_create -> ready. False if the tab moved on (closed, retried)."""
    return (
        _transition(
            tab_id=tab_id,
            to=TabState.READY,
            sources=[TabState.PENDING_SESSION_CREATE],
            at_attempt=attempt,
            session_id=session_id,
            acp_server_id=server_id,
            ready_at=now(),
        )
        is not None
    )


def tab_fail(*, tab_id: UUID, code: str, message: str, attempt: int | None = None) -> bool:
    """pending_*|ready -> error with a machine code and a human message."""
    return (
        _transition(
            tab_id=tab_id,
            to=TabState.ERROR,
            at_attempt=attempt,
            error_code=code,
            error_message=message[:2000],
        )
        is not None
    )


def tabs_fail_waiting(*, task_id: int, code: str, message: str) -> int:
    """Fail every tab of the task still waiting for provisioning; returns how many."""
    workspace_id = Task.objects.values_list("workspace_id", flat=True).get(pk=task_id)
    failed = _transition_all(
        workspace_id=workspace_id,
        rows=WorkbenchTab.objects.filter(task_id=task_id),
        to=TabState.ERROR,
        sources=[TabState.PENDING_PROVISION],
        error_code=code,
        error_message=message[:2000],
    )
    return len(failed)


def _release_after_commit(sandbox_id: int) -> None:
    """A failed sandbox keeps its row (its error stays visible) but must hold nothing: a
    server a crashed run started, or one that only looked gone, is stopped in the
    background."""
    workflows.dispatch_after_commit(workflows.start_sandbox_release, sandbox_id=sandbox_id)


def sandbox_lost(*, sandbox_id: int, message: str) -> int:
    """A ready sandbox died: fail it and every tab on it with sandbox_lost, atomically."""
    workspace_id = Sandbox.objects.values_list("task__workspace_id", flat=True).get(pk=sandbox_id)
    with workspace_transaction(workspace_id):
        if sandbox_services.sandbox_fail(
            sandbox_id=sandbox_id, code=TabErrorCode.SANDBOX_LOST, message=message
        ):
            _release_after_commit(sandbox_id)
        lost = _transition_all(
            workspace_id=workspace_id,
            rows=WorkbenchTab.objects.filter(sandbox_id=sandbox_id),
            to=TabState.ERROR,
            sources=[TabState.PENDING_SESSION_CREATE, TabState.READY],
            error_code=TabErrorCode.SANDBOX_LOST,
            error_message=f"The sandbox stopped ({message}); retry to re-provision it."[:2000],
        )
    return len(lost)


def sandboxes_watch() -> int:
    """Fail every ready sandbox whose server is gone, with its tabs (`sandbox_lost`, with a
    retry that re-provisions), so a dead server shows within a round or two of upkeep
    rather than at the next prompt. A server that misses one check is asked again next
    round: only one still failing after WORKBENCH_HEALTH_GRACE seconds is lost."""
    lost = 0
    grace = timedelta(seconds=settings.WORKBENCH_HEALTH_GRACE)
    for sandbox in Sandbox.objects.filter(state=SandboxState.READY):
        if sandbox_services.sandbox_healthy(sandbox=sandbox):
            if sandbox.unhealthy_since is not None:
                Sandbox.objects.filter(pk=sandbox.pk).update(unhealthy_since=None)
            continue
        if sandbox.unhealthy_since is None:
            Sandbox.objects.filter(pk=sandbox.pk, unhealthy_since__isnull=True).update(
                unhealthy_since=now()
            )
        elif now() - sandbox.unhealthy_since >= grace:
            lost += 1
            sandbox_lost(
                sandbox_id=sandbox.pk, message="its sandbox-agent server stopped answering"
            )
    return lost


def events_prune(*, older_than_hours: float | None = None) -> int:
    """Delete events older than the retention; clients that need them get a snapshot."""
    from datetime import timedelta

    from core.models import Event

    hours = (
        older_than_hours
        if older_than_hours is not None
        else settings.WORKBENCH_EVENT_RETENTION_HOURS
    )
    deleted, _ = Event.objects.filter(created_at__lt=now() - timedelta(hours=hours)).delete()
    return deleted
