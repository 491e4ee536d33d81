"""Who provisions a sandbox: the task's one live sandbox, the provisioning lease a run
takes (its fence is the run's token), and the workspace's share of concurrent runs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from django.conf import settings
from django.db.models import F
from django.utils.timezone import now

from core.locks import workspace_transaction
from sandboxes.models import (
    LIVE_STATES,
    Sandbox,
    SandboxState,
)
from sandboxes.services.transitions import record_sandbox, workspace_id_of

ClaimOutcome = Literal["ready", "lead", "busy", "queued", "exhausted", "gone"]


class LeaseLost(Exception):
    """Another run took over this sandbox's provisioning; this run must stop quietly."""


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    sandbox: Sandbox | None


def lease_until() -> object:
    return now() + timedelta(seconds=settings.WORKBENCH_PROVISION_LEASE_SECONDS)


def _has_slot(workspace_id: int, *, besides: int | None = None) -> bool:
    """Whether the workspace may start another provisioning run: fewer than its share are
    running (a live lease). Asked under the workspace lock, so two leases never both pass."""
    running = Sandbox.objects.filter(
        task__workspace_id=workspace_id,
        state=SandboxState.PROVISIONING,
        lease_expires_at__gt=now(),
    )
    if besides is not None:
        running = running.exclude(pk=besides)
    return running.count() < settings.WORKBENCH_MAX_PROVISIONING_PER_WORKSPACE


def sandbox_ensure(
    *, workspace_id: int, task_id: int, provider: str, agent: str
) -> tuple[Sandbox, bool]:
    """The task's one live sandbox, created (provisioning, not yet started: fence 0) when
    there is none; returns it and whether it was created. The caller starts its run.

    Runs in the caller's workspace transaction (the tab that needs it commits with it); the
    workspace lock serializes creations, and the partial unique constraint backs it up.
    """
    with workspace_transaction(workspace_id):
        sandbox = Sandbox.objects.filter(task_id=task_id, state__in=LIVE_STATES).first()
        if sandbox is not None:
            return sandbox, False
        attempt = Sandbox.objects.filter(task_id=task_id).count() + 1
        sandbox = Sandbox.objects.create(
            task_id=task_id, provider=provider, agent=agent, key=f"t{task_id}-{attempt}"
        )
        record_sandbox(sandbox.pk)
    return sandbox, True


def sandbox_lease(*, sandbox_id: int, owner: str) -> Claim:
    """Take the provisioning lease of a sandbox for one run.

    lead: the caller holds the lease (the row's `fence` is its token) and must run
    `sandbox_provision`. busy: a live run holds it. queued: its workspace already has its
    share of runs going (it starts when one of them ends). exhausted:
    WORKBENCH_MAX_PROVISION_RUNS runs took the lease and died. ready, gone: nothing to run.
    `owner` (the Celery task id) is recorded for operators; a killed run's lease lapses
    after WORKBENCH_PROVISION_LEASE_SECONDS and the next run takes over.
    """
    workspace_id = workspace_id_of(sandbox_id)
    with workspace_transaction(workspace_id):
        sandbox = Sandbox.objects.filter(pk=sandbox_id).first()
        if sandbox is None or sandbox.state not in LIVE_STATES:
            return Claim("gone", sandbox)
        if sandbox.state == SandboxState.READY:
            return Claim("ready", sandbox)
        # Only an expired lease may be taken, even by a redelivery of the same task (same
        # owner id): after a visibility timeout the original run may still be alive, and
        # two runs must never work one sandbox at once. A live run keeps its lease fresh
        # (_LeaseKeeper), so only a dead or hung one loses it.
        if sandbox.lease_expires_at is not None and sandbox.lease_expires_at > now():
            return Claim("busy", sandbox)
        if sandbox.fence >= settings.WORKBENCH_MAX_PROVISION_RUNS:
            return Claim("exhausted", sandbox)  # runs keep dying: stop looping
        if not _has_slot(workspace_id, besides=sandbox.pk):
            return Claim("queued", sandbox)
        taken = Sandbox.objects.filter(
            pk=sandbox.pk, state=SandboxState.PROVISIONING, fence=sandbox.fence
        ).update(lease_owner=owner, lease_expires_at=lease_until(), fence=F("fence") + 1)
        if not taken:
            return Claim("busy", sandbox)
        sandbox.refresh_from_db()
    return Claim("lead", sandbox)


def sandboxes_to_start(*, workspace_id: int) -> list[int]:
    """Provisioning sandboxes of the workspace that no run holds (never started, or whose
    run died), oldest first, as many as the workspace has free slots for; stamped as sent
    (the caller starts their runs)."""
    moment = now()
    provisioning = Sandbox.objects.filter(
        task__workspace_id=workspace_id, state=SandboxState.PROVISIONING
    )
    running = provisioning.filter(lease_expires_at__gt=moment).count()
    free = settings.WORKBENCH_MAX_PROVISIONING_PER_WORKSPACE - running
    if free <= 0:
        return []
    idle = provisioning.exclude(lease_expires_at__gt=moment).order_by("created_at", "pk")
    chosen = list(idle.values_list("pk", flat=True)[:free])
    # Their runs are sent now: the reconciler times a lost run message from here.
    Sandbox.objects.filter(pk__in=chosen).update(updated_at=moment)
    return chosen
