"""Re-drive pending tabs whose work was lost (a killed worker, a lost queue, a failed
dispatch), and fail the ones that stall again and again: every pending tab reaches
ready, error or closed within a bounded time (invariant 3).

Bound: a tab is re-driven after WORKBENCH_STALL_SECONDS without progress, at most
WORKBENCH_MAX_REDRIVES times, then failed with `timeout`. A tab waiting on a provisioning
run that still holds a live lease is making progress, not stalled; so is one whose sandbox
waits for a slot while its workspace's other runs hold theirs; so is one whose message
still waits its turn in its own queue (workbench.queues): each row is judged by its own
queue, so a long provisioning queue holds back no session repair, and a lost message is
found as soon as its queue has moved past it, not once every queue is drained.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils.timezone import now

from core.locks import row_locks, workspace_transaction
from sandboxes.models import Sandbox, SandboxState
from workbench import metrics, queues, services, workflows
from workbench.models import PENDING_STATES, TabErrorCode, TabState, WorkbenchTab
from workbench.services import messages

logger = logging.getLogger(__name__)

# The queue each kind of pending work waits in (CELERY_TASK_ROUTES).
PROVISION = queues.queue_of("workbench.tasks.provision_sandbox")
SESSIONS = queues.queue_of("workbench.tasks.open_tab_session")
TEARDOWNS = queues.queue_of("workbench.tasks.close_tab_session")
DESTROYS = queues.queue_of("workbench.tasks.destroy_sandbox")
RELEASES = queues.queue_of("workbench.tasks.release_sandbox")
PROMPTS = queues.queue_of("workbench.tasks.deliver_messages")


class _Cutoffs:
    """Per queue, the moment before which a silent row's message has left that queue."""

    def __init__(self, waiting: dict[str, float], *, at: datetime, silence: float) -> None:
        self.waiting = waiting
        self.silent_since = at - timedelta(seconds=silence)

    def __getitem__(self, queue: str) -> datetime:
        return queues.passed_before(queue, self.waiting, silent_since=self.silent_since)


def _not_resent_since(cutoff: datetime) -> Q:
    """The tab's work was not re-sent by a reconciler since `cutoff`."""
    return Q(redriven_at__isnull=True) | Q(redriven_at__lt=cutoff)


def _quiet_since(cutoff: datetime) -> Q:
    # Progress is a state change or the last re-drive; not updated_at, which a draft saved
    # into a stuck tab (every ~600 ms while the user types) would keep pushing back.
    return Q(state_changed_at__lt=cutoff) & _not_resent_since(cutoff)


def stalled_tabs(
    *, at: datetime | None = None, waiting: dict[str, float] | None = None, limit: int = 500
) -> list[WorkbenchTab]:
    """Pending tabs with no progress for WORKBENCH_STALL_SECONDS whose message is not
    waiting in its queue (`waiting`: queues.oldest_waiting, read from Redis if None)."""
    moment = at or now()
    cutoffs = _Cutoffs(
        queues.oldest_waiting([PROVISION, SESSIONS]) if waiting is None else waiting,
        at=moment,
        silence=settings.WORKBENCH_STALL_SECONDS,
    )
    provisioning_live = Sandbox.objects.filter(
        task_id=OuterRef("task_id"), state=SandboxState.PROVISIONING, lease_expires_at__gt=moment
    )
    # A sandbox no run holds (never started, or its run died) waits for a slot of its
    # workspace's share (sandbox_lease); while that workspace's other runs hold live
    # leases it is queued, and starts when one of them ends.
    waiting_for_slot = Sandbox.objects.filter(
        Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=moment),
        task_id=OuterRef("task_id"),
        state=SandboxState.PROVISIONING,
    )
    workspace_busy = Sandbox.objects.filter(
        task__workspace_id=OuterRef("task__workspace_id"),
        state=SandboxState.PROVISIONING,
        lease_expires_at__gt=moment,
    )
    # Its run was (re)sent after the tab last moved (a queued sandbox started when a slot
    # freed): the run's message may still wait in the provisioning queue.
    run_sent_late = Sandbox.objects.filter(
        task_id=OuterRef("task_id"),
        state=SandboxState.PROVISIONING,
        updated_at__gte=cutoffs[PROVISION],
    )
    provision_stalled = (
        Q(state=TabState.PENDING_PROVISION)
        & _quiet_since(cutoffs[PROVISION])
        & Q(provisioning_live=False, queued=False, run_sent_late=False)
    )
    session_stalled = (
        Q(state=TabState.PENDING_SESSION_CREATE)
        & _quiet_since(cutoffs[SESSIONS])
        # A session step that started has its own bound (the ACP call's timeout): a slow
        # agent start is not a lost message.
        & ~Q(
            session_starts__gt=0,
            state_changed_at__gte=moment - timedelta(seconds=settings.WORKBENCH_SESSION_TIMEOUT),
        )
    )
    rows = (
        WorkbenchTab.objects.filter(state__in=PENDING_STATES)
        .annotate(
            provisioning_live=Exists(provisioning_live),
            queued=Exists(waiting_for_slot) & Exists(workspace_busy),
            run_sent_late=Exists(run_sent_late),
        )
        .filter(provision_stalled | session_stalled)
        .order_by("state_changed_at")
    )
    return list(rows[:limit])


def _claim(tab: WorkbenchTab) -> int:
    """Take a stalled tab for one re-drive; 0 if another reconciler has it or it moved.

    Under the workspace lock (the one lock order), the row is locked with SKIP LOCKED on
    PostgreSQL, so concurrent reconcilers (beat and `manage.py reconcile`, several hosts)
    pass over each other's rows instead of queueing; the conditional update then checks
    the tab is still as read.
    """
    rows = WorkbenchTab.objects.filter(
        pk=tab.pk, state=tab.state, attempt=tab.attempt, redrives=tab.redrives
    )
    if row_locks() and not list(
        rows.select_for_update(skip_locked=True).values_list("pk", flat=True)
    ):
        return 0
    return rows.update(redrives=F("redrives") + 1, redriven_at=now())


def reconcile() -> dict[str, int]:
    """Re-drive or fail stalled tabs, re-send stuck prompts, sweep lost teardowns.

    Each row is judged against its own queue: one whose message still waits behind others
    is queued, not stalled, and re-driving it would only lengthen the queue.
    """
    waiting = queues.oldest_waiting(
        list(dict.fromkeys([PROVISION, SESSIONS, TEARDOWNS, DESTROYS, RELEASES, PROMPTS]))
    )
    if waiting:
        behind = {name: round(time.time() - sent) for name, sent in waiting.items()}
        logger.info("work queues behind by (s): %s", behind)
    redriven = failed = 0
    for tab in stalled_tabs(waiting=waiting):
        if tab.redrives >= settings.WORKBENCH_MAX_REDRIVES:
            failed += services.tab_fail(
                tab_id=tab.pk,
                attempt=tab.attempt,
                code=TabErrorCode.TIMEOUT,
                message=f"Gave up after {tab.redrives} attempts to get past {tab.state}; "
                "retry to try again.",
            )
            continue
        with workspace_transaction(tab.workspace_id):
            claimed = _claim(tab)
            if claimed:
                services.tab_redrive(tab_id=tab.pk, attempt=tab.attempt)
        redriven += claimed
    swept = sweep_teardowns(waiting=waiting)
    moment = now()
    prompts = messages.tabs_with_undelivered_messages(
        before=_Cutoffs(waiting, at=moment, silence=30)[PROMPTS]
    )
    for tab_id in prompts:
        workflows.start_message_delivery(tab_id=tab_id)
    _mark_resent(WorkbenchTab.objects.filter(pk__in=prompts), "redriven_at")
    metrics.reconciler_counted(redriven=redriven, failed=failed, prompts=len(prompts))
    if redriven or failed or prompts:
        logger.info(
            "reconciler re-drove %s tabs, failed %s, re-sent prompts of %s",
            redriven,
            failed,
            len(prompts),
        )
    return {"redriven": redriven, "failed": failed, "prompts": len(prompts), "swept": swept}


def sweep_teardowns(*, at: datetime | None = None, waiting: dict[str, float] | None = None) -> int:
    """Re-send what frees provider resources, for every row that says it is still held
    after WORKBENCH_STALL_SECONDS and whose message has left its queue (it was lost):
    destroys of archived tasks' sandboxes, releases of failed sandboxes, teardowns of
    closed tabs' sessions (also a session whose step died before the tab recorded it
    ready: its server id was recorded first). Each is idempotent, so a duplicate costs one
    provider call."""
    cutoffs = _Cutoffs(
        queues.oldest_waiting([DESTROYS, RELEASES, TEARDOWNS]) if waiting is None else waiting,
        at=at or now(),
        silence=settings.WORKBENCH_STALL_SECONDS,
    )
    destroying = Sandbox.objects.filter(
        state=SandboxState.DESTROYING, updated_at__lt=cutoffs[DESTROYS]
    )
    unreleased = Sandbox.objects.filter(
        state=SandboxState.FAILED, released_at__isnull=True, updated_at__lt=cutoffs[RELEASES]
    )
    sessions = (
        WorkbenchTab.objects.filter(
            state=TabState.CLOSED,
            session_closed_at__isnull=True,
            closed_at__lt=cutoffs[TEARDOWNS],
        )
        .filter(_not_resent_since(cutoffs[TEARDOWNS]))
        .exclude(acp_server_id="")
    )
    destroys = list(destroying.values_list("pk", flat=True))
    releases = list(unreleased.values_list("pk", flat=True))
    teardowns = list(sessions.values_list("pk", flat=True))
    for sandbox_id in destroys:
        workflows.start_sandbox_destroy(sandbox_id=sandbox_id)
    for sandbox_id in releases:
        workflows.start_sandbox_release(sandbox_id=sandbox_id)
    for tab_id in teardowns:
        workflows.start_session_teardown(tab_id=tab_id)
    _mark_resent(Sandbox.objects.filter(pk__in=destroys + releases), "updated_at")
    _mark_resent(WorkbenchTab.objects.filter(pk__in=teardowns), "redriven_at")
    return len(destroys) + len(releases) + len(teardowns)


def _mark_resent(rows: QuerySet[Any], field: str) -> None:
    """Stamp the rows whose work was just re-sent, so the next rounds time them from the
    re-send: while their queue is still behind, a second copy would only wait behind the
    first. (Neither column is shown to clients; no event.)"""
    rows.update(**{field: now()})
