"""Re-drive pending tabs whose work was lost (a killed worker, a lost queue, a failed
dispatch), and fail the ones that stall again and again: every pending tab reaches
ready, error or closed within a bounded time (invariant 3).

Bound: a tab is re-driven after WORKBENCH_STALL_SECONDS without progress, at most
WORKBENCH_MAX_REDRIVES times, then failed with `timeout`. A tab waiting on a provisioning
run that still holds a live lease is making progress, not stalled; so is one whose sandbox
waits for a slot while its workspace's other runs hold theirs.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Exists, F, OuterRef, Q
from django.utils.timezone import now

from sandboxes.models import Sandbox, SandboxState
from workbench import messages, metrics, services, workflows
from workbench.events import row_locks, workspace_transaction
from workbench.models import PENDING_STATES, TabErrorCode, TabState, WorkbenchTab

logger = logging.getLogger(__name__)


def stalled_tabs(*, at: object | None = None, limit: int = 500) -> list[WorkbenchTab]:
    """Pending tabs with no progress for WORKBENCH_STALL_SECONDS."""
    moment = at or now()
    cutoff = moment - timedelta(seconds=settings.WORKBENCH_STALL_SECONDS)
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
    # Progress is a state change or the last re-drive; not updated_at, which a draft saved
    # into a stuck tab (every ~600 ms while the user types) would keep pushing back.
    quiet = Q(redriven_at__isnull=True) | Q(redriven_at__lt=cutoff)
    rows = (
        WorkbenchTab.objects.filter(state__in=PENDING_STATES, state_changed_at__lt=cutoff)
        .filter(quiet)
        .annotate(
            provisioning_live=Exists(provisioning_live),
            queued=Exists(waiting_for_slot) & Exists(workspace_busy),
        )
        .exclude(state=TabState.PENDING_PROVISION, provisioning_live=True)
        .exclude(state=TabState.PENDING_PROVISION, queued=True)
        # A session step that started has its own bound (the ACP call's timeout): a slow
        # agent start is not a lost message.
        .exclude(
            state=TabState.PENDING_SESSION_CREATE,
            session_starts__gt=0,
            state_changed_at__gte=moment - timedelta(seconds=settings.WORKBENCH_SESSION_TIMEOUT),
        )
        .order_by("state_changed_at")
    )
    return list(rows[:limit])


def broker_backlog() -> int:
    """Messages waiting in the work queues (Redis lists); 0 if the broker cannot say."""
    import redis

    try:
        client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=1)
        return sum(client.llen(queue) for queue in settings.WORKBENCH_WORK_QUEUES)
    except redis.RedisError:
        return 0


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
    """Re-drive or fail stalled tabs, and re-send stuck prompts.

    Only while the work queues are drained: a tab whose message waits behind a backlog is
    queued, not stalled, and re-driving it would only lengthen the queue. Lost messages
    are found as soon as the workers catch up.
    """
    backlog = broker_backlog()
    if backlog:
        logger.info("reconciler waits: %s messages queued", backlog)
        return {"redriven": 0, "failed": 0, "prompts": 0, "swept": 0, "backlog": backlog}
    redriven = failed = 0
    for tab in stalled_tabs():
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
    swept = sweep_teardowns()
    prompts = messages.tabs_with_undelivered_messages(older_than_seconds=30)
    for tab_id in prompts:
        workflows.start_message_delivery(tab_id=tab_id)
    metrics.reconciler_counted(redriven=redriven, failed=failed, prompts=len(prompts))
    if redriven or failed or prompts:
        logger.info(
            "reconciler re-drove %s tabs, failed %s, re-sent prompts of %s",
            redriven,
            failed,
            len(prompts),
        )
    return {
        "redriven": redriven,
        "failed": failed,
        "prompts": len(prompts),
        "swept": swept,
        "backlog": 0,
    }


def sweep_teardowns(*, at: object | None = None) -> int:
    """Re-send what frees provider resources, for every row that says it is still held
    after WORKBENCH_STALL_SECONDS (its message was lost): destroys of archived tasks'
    sandboxes, releases of failed sandboxes, teardowns of closed tabs' sessions (also a
    session whose step died before the tab recorded it ready: its server id was recorded
    first). Each is idempotent, so a duplicate costs one provider call."""
    cutoff = (at or now()) - timedelta(seconds=settings.WORKBENCH_STALL_SECONDS)
    destroying = Sandbox.objects.filter(state=SandboxState.DESTROYING, updated_at__lt=cutoff)
    unreleased = Sandbox.objects.filter(
        state=SandboxState.FAILED, released_at__isnull=True, updated_at__lt=cutoff
    )
    sessions = WorkbenchTab.objects.filter(
        state=TabState.CLOSED, session_closed_at__isnull=True, closed_at__lt=cutoff
    ).exclude(acp_server_id="")
    swept = 0
    for sandbox_id in destroying.values_list("pk", flat=True):
        workflows.start_sandbox_destroy(sandbox_id=sandbox_id)
        swept += 1
    for sandbox_id in unreleased.values_list("pk", flat=True):
        workflows.start_sandbox_release(sandbox_id=sandbox_id)
        swept += 1
    for tab_id in sessions.values_list("pk", flat=True):
        workflows.start_session_teardown(tab_id=tab_id)
        swept += 1
    return swept
