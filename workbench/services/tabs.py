"""What members do to tabs: open, edit, read and mark unread (per member), close, retry."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils.timezone import now

from core.errors import Conflict, InvalidTransition
from core.events import record_event, record_events
from core.locks import row_locks, workspace_transaction
from core.models import Membership
from core.transitions import transition
from sandboxes.models import LIVE_STATES, Sandbox, SandboxState
from sandboxes.selectors import sandbox_live_for_task
from tasks_app.models import Task
from workbench import workflows
from workbench.models import (
    MESSAGE_TRANSITIONS,
    OPEN_STATES,
    Message,
    MessageRole,
    MessageState,
    TabState,
    TabUserState,
    WorkbenchTab,
)
from workbench.serializers import message_payload
from workbench.services.transitions import (
    dispatch_session,
    ensure_provisioning,
    record_tab,
    tab_transition,
    tab_workspace_id,
)

if TYPE_CHECKING:
    from collections.abc import Collection
    from uuid import UUID

    from django.contrib.auth.models import User

    from workbench.serializers import TabUserStatePayload


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
            agent = seen.sandbox_agent or task.agent
            tab = WorkbenchTab.objects.create(
                workspace_id=task.workspace_id,
                task=task,
                created_by=user,
                title=title or f"{agent} {_next_tab_number(task.pk)}",
                # A live sandbox runs the agent it was made with (a task's agent edited since
                # applies from its next provisioning attempt).
                agent=agent,
                state=TabState.PENDING_SESSION_CREATE if ready else TabState.PENDING_PROVISION,
                sandbox_id=seen.sandbox_id if ready else None,
                idempotency_key=idempotency_key or None,
            )
            record_tab(tab)
            if ready:
                dispatch_session(tab)
            elif seen.sandbox_id is None:
                ensure_provisioning(task)
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

    sandbox_id: int | None
    sandbox_state: str | None
    sandbox_agent: str | None


def _next_tab_number(task_id: int) -> int:
    """Count the tab being opened on the task and return its number (one UPDATE ...
    RETURNING, SQLite 3.35+ and PostgreSQL), under the workspace lock the caller holds."""
    connection = transaction.get_connection()
    table = connection.ops.quote_name(Task._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET tabs_opened = tabs_opened + 1 WHERE id = %s RETURNING tabs_opened",
            [task_id],
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 1


def _tab_create_check(*, user: User, task: Task) -> _TabCreateView:
    """Refuse a tab on an archived task or over the per-task or per-user limit of open tabs;
    returns the task's live sandbox.

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
    with transaction.get_connection().cursor() as cursor:
        cursor.execute(
            _check_sql(), [*OPEN_STATES, user.pk, *OPEN_STATES, *LIVE_STATES * 3, task.pk]
        )
        row = cursor.fetchone()
    if row is None:
        raise Conflict("the task is archived; open tabs on an active task", code="task_archived")
    archived_at, open_on_task, open_by_user, sandbox_id, sandbox_state, sandbox_agent = row
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
    return _TabCreateView(
        sandbox_id=sandbox_id,
        sandbox_state=sandbox_state,
        sandbox_agent=sandbox_agent,
    )


@cache
def _check_sql() -> str:
    """The statement of _tab_create_check, written out once.

    Why not the ORM: the same query built by it (annotate with five subqueries) cost ~2.5 ms
    of CPU per tab POST to compile, a quarter of the POST's 9.2 ms in-process
    (docs/benchmarks.md, "Tab POST CPU"); running it takes ~0.1 ms. Both counts read open
    tabs through an index that leads with the state's owner (tab_task_state,
    tab_creator_state): closed tabs, however many, are not scanned.
    """
    quote = transaction.get_connection().ops.quote_name
    tab, task, sandbox = (quote(m._meta.db_table) for m in (WorkbenchTab, Task, Sandbox))
    creator = quote(WorkbenchTab._meta.get_field("created_by").column)
    open_states = ", ".join(["%s"] * len(OPEN_STATES))
    live_states = ", ".join(["%s"] * len(LIVE_STATES))

    def live(column: str) -> str:
        return (
            f"(SELECT s.{quote(column)} FROM {sandbox} s WHERE s.task_id = t.id"
            f" AND s.state IN ({live_states}) LIMIT 1)"
        )

    return (
        "SELECT t.archived_at,"
        f" (SELECT COUNT(*) FROM {tab} o WHERE o.task_id = t.id AND o.state IN ({open_states})),"
        f" (SELECT COUNT(*) FROM {tab} u WHERE u.{creator} = %s AND u.state IN ({open_states})),"
        f" {live('id')}, {live('state')}, {live('agent')}"
        f" FROM {task} t WHERE t.id = %s"
    )


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
    user: User,
    title: str | None = None,
    draft: str | None = None,
    unread: bool | None = None,
) -> WorkbenchTab:
    """Edit a tab in any state but closed (a draft is never lost): its title, which every
    member sees, and the caller's own draft and unread. (Its model:
    agent_models.tab_set_model.)"""
    workspace_id = tab_workspace_id(tab_id)
    if workspace_id is None:
        raise WorkbenchTab.DoesNotExist(tab_id)
    with workspace_transaction(workspace_id):
        open_tab = WorkbenchTab.objects.filter(pk=tab_id).exclude(state=TabState.CLOSED)
        if title is not None:
            if not open_tab.update(title=title, updated_at=now(), version=F("version") + 1):
                raise tab_closed()
            record_tab(WorkbenchTab.objects.get(pk=tab_id))
        elif not open_tab.exists():
            raise tab_closed()
        if draft is not None or unread is not None:
            _user_state_set(
                tab_id=tab_id,
                workspace_id=workspace_id,
                user_id=user.pk,
                draft=draft,
                unread=unread,
            )
        return WorkbenchTab.objects.get(pk=tab_id)


def tab_closed() -> InvalidTransition:
    return InvalidTransition("the tab is closed; closed tabs cannot be edited", code="tab_closed")


def _user_state_set(
    *, tab_id: UUID, workspace_id: int, user_id: int, draft: str | None, unread: bool | None
) -> None:
    """Under the workspace lock: set one member's own state and tell only them (other
    members' sockets get a `private` frame in its place)."""
    change: TabUserStatePayload = {"tab": str(tab_id)}
    if draft is not None:
        change["draft"] = draft
    if unread is not None:
        change["unread"] = unread
    fields = {k: v for k, v in change.items() if k != "tab"}
    TabUserState.objects.update_or_create(tab_id=tab_id, user_id=user_id, defaults=fields)
    _record_own(workspace_id, change, [user_id])


def _record_own(workspace_id: int, change: TabUserStatePayload, users: list[int]) -> None:
    record_event(workspace_id, "tab.user_state", change, audience=users)


def tab_mark_read(*, tab_id: UUID, user_id: int) -> bool:
    """The member is viewing the tab: clear their unread (no event when it was clear)."""
    unread = TabUserState.objects.filter(tab_id=tab_id, user_id=user_id, unread=True)
    # A read first: a page sends `view` on every tab switch and focus, and most find nothing
    # to clear; only a clear takes the workspace lock every writer of the workspace waits on.
    workspace_id = tab_workspace_id(tab_id) if unread.exists() else None
    if workspace_id is None:
        return False
    with workspace_transaction(workspace_id):
        cleared = unread.update(unread=False, updated_at=now())
        if cleared:
            _record_own(workspace_id, {"tab": str(tab_id), "unread": False}, [user_id])
    return bool(cleared)


def tab_mark_unread(*, tab_id: UUID, viewers: Collection[int] = ()) -> list[int]:
    """An agent reply arrived: mark the tab unread for every member not viewing it, once
    (members for whom it already is unread get nothing). One event for all of them.
    Returns the members marked."""
    workspace_id = tab_workspace_id(tab_id)
    if workspace_id is None:
        return []
    with workspace_transaction(workspace_id):
        if not WorkbenchTab.objects.filter(pk=tab_id).exclude(state=TabState.CLOSED).exists():
            return []
        already = TabUserState.objects.filter(tab_id=tab_id, unread=True).values("user_id")
        users = sorted(
            Membership.objects.filter(workspace_id=workspace_id)
            .exclude(user_id__in=already)
            .exclude(user_id__in=list(viewers))
            .values_list("user_id", flat=True)
        )
        if not users:
            return []
        TabUserState.objects.bulk_create(
            [TabUserState(tab_id=tab_id, user_id=user, unread=True) for user in users],
            update_conflicts=True,
            unique_fields=["tab", "user"],
            update_fields=["unread", "updated_at"],
        )
        _record_own(workspace_id, {"tab": str(tab_id), "unread": True}, users)
    return users


def tab_close(*, tab_id: UUID) -> WorkbenchTab:
    """Any open state -> closed. Closing a closed tab is a no-op (DELETE is idempotent).

    Prompts still waiting fail in the same transaction, with the reason (they are never
    delivered, and a transcript must not show them waiting forever). A session that exists
    is torn down in the background; one still being created for this tab is torn down by
    its own step when it finds the tab closed.
    """
    with workspace_transaction(tab_workspace_id(tab_id) or 0):
        tab = tab_transition(tab_id=tab_id, to=TabState.CLOSED, closed_at=now())
        if tab is None:
            return WorkbenchTab.objects.get(pk=tab_id)
        _fail_waiting_prompts(tab)
    if tab.acp_server_id and tab.sandbox_id:
        workflows.dispatch_after_commit(workflows.start_session_teardown, tab_id=tab.pk)
    return tab


def _fail_waiting_prompts(tab: WorkbenchTab) -> None:
    waiting = Message.objects.filter(tab=tab, role=MessageRole.USER, state=MessageState.QUEUED)
    ids = list(waiting.values_list("pk", flat=True))
    if not ids:
        return
    transition(
        Message.objects.filter(pk__in=ids),
        table=MESSAGE_TRANSITIONS,
        to=MessageState.FAILED,
        sources=[MessageState.QUEUED],
        error_message="The tab was closed before this prompt was sent.",
    )
    failed = Message.objects.filter(pk__in=ids, state=MessageState.FAILED)
    record_events(tab.workspace_id, "message.updated", [message_payload(m) for m in failed])


def tab_retry(*, tab_id: UUID) -> WorkbenchTab:
    """error -> pending_session_create if the task's sandbox is ready, else
    pending_provision (which provisions afresh if the last attempt failed). Same tab id."""
    with workspace_transaction(tab_workspace_id(tab_id) or 0):
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
        moved = tab_transition(
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
            dispatch_session(moved)
        else:
            ensure_provisioning(tab.task)
    return moved
