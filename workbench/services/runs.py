"""The task's provisioning run and what follows from it: the hand-off to every waiting
tab, a failed or lost sandbox failing its tabs, the workspace's queue of runs, the health
watch, and the re-drive of a pending tab whose message was lost."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.utils.timezone import now

from core import logs
from core.locks import workspace_transaction
from sandboxes import services as sandbox_services
from sandboxes.models import Sandbox, SandboxState
from sandboxes.selectors import sandbox_live_for_task
from tasks_app import services as task_services
from tasks_app.models import Task
from workbench import workflows
from workbench.models import (
    PENDING_STATES,
    TabErrorCode,
    TabState,
    WorkbenchTab,
)
from workbench.services.tabs import tab_retry
from workbench.services.transitions import (
    dispatch_session,
    ensure_provisioning,
    tabs_fail_waiting,
    tabs_transition,
)

if TYPE_CHECKING:
    from uuid import UUID


logger = logging.getLogger(__name__)


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
    logs.bind(workspace=workspace_id, task=task_id, sandbox=sandbox_id)
    result = task_services.task_provision_run(
        sandbox_id=sandbox_id, owner=owner, on_ready=lambda: hand_off(task_id=task_id)
    )
    if result.outcome == "busy" and result.sandbox is not None:
        expires = result.sandbox.lease_expires_at
        wait = (expires - now()).total_seconds() if expires else 0.0
        return RunOutcome("busy", retry_in=max(wait, 0.0) + 1.0)
    if result.outcome == "ready":
        # Made ready by another run that handed off already, or by this one (which handed
        # off in its commit); tabs that slipped in between are handed off here.
        hand_off(task_id=task_id)
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
                release_after_commit(result.sandbox.pk)
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


def hand_off(*, task_id: int) -> int:
    """Every tab of the task waiting for provisioning goes on to its session step, now that
    the task's sandbox is ready; returns how many."""
    sandbox = sandbox_live_for_task(task_id=task_id)
    if sandbox is None or sandbox.state != SandboxState.READY:
        return 0
    workspace_id = Task.objects.values_list("workspace_id", flat=True).get(pk=task_id)
    with workspace_transaction(workspace_id):
        moved = tabs_transition(
            workspace_id=workspace_id,
            rows=WorkbenchTab.objects.filter(task_id=task_id),
            to=TabState.PENDING_SESSION_CREATE,
            sources=[TabState.PENDING_PROVISION],
            sandbox_id=sandbox.pk,
        )
        for tab in moved:
            dispatch_session(tab)
    return len(moved)


def sandboxes_start_queued(*, workspace_id: int) -> int:
    """Start the runs of the workspace's queued sandboxes its share has room for."""
    # Under the lock: two runs ending at once must not both start the same queued one.
    with workspace_transaction(workspace_id):
        started = sandbox_services.sandboxes_to_start(workspace_id=workspace_id)
        for sandbox_id in started:
            workflows.dispatch_after_commit(workflows.start_sandbox_run, sandbox_id=sandbox_id)
    return len(started)


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
            dispatch_session(tab)
            return
        sandbox = sandbox_live_for_task(task_id=tab.task_id)
        if sandbox is None:
            ensure_provisioning(tab.task)
        elif sandbox.state == SandboxState.READY:
            hand_off(task_id=tab.task_id)
        else:
            workflows.dispatch_after_commit(workflows.start_sandbox_run, sandbox_id=sandbox.pk)


def release_after_commit(sandbox_id: int) -> None:
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
            release_after_commit(sandbox_id)
        lost = tabs_transition(
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


def sandbox_discard(*, sandbox_id: int, reason: str) -> bool:
    """An operator ends a sandbox (provisioning or ready): its tabs fail with sandbox_lost
    (their retry provisions afresh), tabs still waiting for its run fail too, and its
    process and files are destroyed in the background. False if it was already ending."""
    sandbox = Sandbox.objects.filter(pk=sandbox_id).values_list("task_id", "task__workspace_id")
    if not sandbox:
        return False
    task_id, workspace_id = sandbox[0]
    message = f"The sandbox was stopped ({reason}); retry to provision a new one."
    with workspace_transaction(workspace_id):
        if not sandbox_services.sandbox_begin_destroy(sandbox_id=sandbox_id):
            return False
        tabs_transition(
            workspace_id=workspace_id,
            rows=WorkbenchTab.objects.filter(sandbox_id=sandbox_id),
            to=TabState.ERROR,
            sources=[TabState.PENDING_SESSION_CREATE, TabState.READY],
            error_code=TabErrorCode.SANDBOX_LOST,
            error_message=message[:2000],
        )
        # Its run, if one is going, finds its lease gone at its next step and stops.
        tabs_fail_waiting(task_id=task_id, code=TabErrorCode.SANDBOX_LOST, message=message)
        workflows.dispatch_after_commit(workflows.start_sandbox_destroy, sandbox_id=sandbox_id)
    return True


def task_reprovision(*, task_id: int, reason: str) -> int:
    """An operator gives the task a fresh sandbox: the live one is discarded and every tab
    of the task in error is retried (a new provisioning attempt). Returns the tabs retried."""
    task = Task.objects.get(pk=task_id)
    with workspace_transaction(task.workspace_id):
        live = sandbox_live_for_task(task_id=task_id)
        if live is not None:
            sandbox_discard(sandbox_id=live.pk, reason=reason)
        failed = WorkbenchTab.objects.filter(task_id=task_id, state=TabState.ERROR)
        retried = [tab_retry(tab_id=tab_id) for tab_id in failed.values_list("pk", flat=True)]
    return len(retried)
