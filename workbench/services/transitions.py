"""The tab transition primitive and the workflow's transitions of tabs.

Each is a conditional update from the states `ALLOWED_TRANSITIONS` permits, bumps the row's
`version` and records its event in the same transaction. A worker that loses a race gets
None/False back; the user actions (tabs.py) turn that into InvalidTransition (409).

Also the two hand-offs every path into a pending state ends with: `dispatch_session` (the
session step, after commit) and `ensure_provisioning` (the task's one provisioning run).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.utils.timezone import now

from core.events import record_event, record_events
from core.locks import workspace_transaction
from core.transitions import transition
from sandboxes import services as sandbox_services
from tasks_app.models import Task
from workbench import workflows
from workbench.models import (
    ALLOWED_TRANSITIONS,
    TabState,
    WorkbenchTab,
)
from workbench.serializers import tab_payload

if TYPE_CHECKING:
    from collections.abc import Iterable
    from uuid import UUID

    from django.db.models import QuerySet


def record_tab(tab: WorkbenchTab) -> None:
    record_event(tab.workspace_id, "tab.updated", tab_payload(tab))


def tab_workspace_id(tab_id: UUID) -> int | None:
    return WorkbenchTab.objects.filter(pk=tab_id).values_list("workspace_id", flat=True).first()


def tab_transition(
    *,
    tab_id: UUID,
    to: str,
    sources: Iterable[str] | None = None,
    at_attempt: int | None = None,
    **fields: object,
) -> WorkbenchTab | None:
    """Move one tab to `to` if it is in one of `sources` (and at `at_attempt`); else None."""
    _end_turn(to, fields)
    workspace_id = tab_workspace_id(tab_id)
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
        record_tab(tab)
    return tab


def tabs_transition(
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
    _end_turn(to, fields)
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
        record_events(workspace_id, "tab.updated", [tab_payload(tab) for tab in moved])
    return moved


def _end_turn(to: str, fields: dict[str, object]) -> None:
    """A tab leaving `ready` (error, closed) ends its running turn, if any: only a ready
    tab's session runs one. The prompt itself ends when its worker hears back, and that
    late end leaves the tab's `running_since` alone (messages._tab_running)."""
    if to != TabState.READY:
        fields.setdefault("running_since", None)


def tab_mark_session_pending(*, tab_id: UUID, attempt: int, sandbox_id: int) -> WorkbenchTab | None:
    """pending_provision -> pending_session_create, attached to the ready sandbox."""
    return tab_transition(
        tab_id=tab_id,
        to=TabState.PENDING_SESSION_CREATE,
        sources=[TabState.PENDING_PROVISION],
        at_attempt=attempt,
        sandbox_id=sandbox_id,
    )


def tab_mark_ready(
    *, tab_id: UUID, attempt: int, session_id: str, server_id: str, session_model: str = ""
) -> bool:
    """pending_session_create -> ready. False if the tab moved on (closed, retried)."""
    return (
        tab_transition(
            tab_id=tab_id,
            to=TabState.READY,
            sources=[TabState.PENDING_SESSION_CREATE],
            at_attempt=attempt,
            session_id=session_id,
            acp_server_id=server_id,
            session_model=session_model,
            ready_at=now(),
        )
        is not None
    )


def tab_fail(*, tab_id: UUID, code: str, message: str, attempt: int | None = None) -> bool:
    """pending_*|ready -> error with a machine code and a human message."""
    return (
        tab_transition(
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
    failed = tabs_transition(
        workspace_id=workspace_id,
        rows=WorkbenchTab.objects.filter(task_id=task_id),
        to=TabState.ERROR,
        sources=[TabState.PENDING_PROVISION],
        error_code=code,
        error_message=message[:2000],
    )
    return len(failed)


def dispatch_session(tab: WorkbenchTab) -> None:
    """Open the session of a tab whose sandbox is ready, once this transaction commits.

    After commit: a worker could otherwise read the row before it exists, and a rolled-back
    request must dispatch nothing. A failed dispatch is left to the reconciler.
    """
    workflows.dispatch_after_commit(
        workflows.start_session_open, tab_id=tab.pk, attempt=tab.attempt
    )


def ensure_provisioning(task: Task) -> None:
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
