"""sandbox_claim: one run per task, leases, and no attempt that nobody waits for."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils.timezone import now

from sandboxes import services
from sandboxes.models import Sandbox, SandboxState
from tests.factories import SandboxFactory, TaskFactory

pytestmark = pytest.mark.django_db


def claim(task, owner="run-1", **kwargs):
    return services.sandbox_claim(
        workspace_id=task.workspace_id,
        task_id=task.pk,
        provider="local",
        agent="mock",
        owner=owner,
        **kwargs,
    )


def test_the_first_claim_creates_the_sandbox_and_leads():
    task = TaskFactory()
    first = claim(task)
    assert first.outcome == "lead"
    assert (first.sandbox.state, first.sandbox.fence) == (SandboxState.PROVISIONING, 1)
    assert claim(task, owner="run-2").outcome == "busy"  # the lease is live
    assert Sandbox.objects.filter(task=task).count() == 1


def test_a_live_lease_is_not_taken_even_by_its_own_owner_again():
    task = TaskFactory()
    claim(task, owner="same")
    assert claim(task, owner="same").outcome == "busy"


def test_an_expired_lease_is_taken_over_with_a_new_fence():
    sandbox = SandboxFactory(
        state=SandboxState.PROVISIONING, fence=1, lease_expires_at=now() - timedelta(seconds=1)
    )
    taken = claim(sandbox.task, owner="rescuer")
    assert taken.outcome == "lead"
    assert (taken.sandbox.pk, taken.sandbox.fence, taken.sandbox.lease_owner) == (
        sandbox.pk,
        2,
        "rescuer",
    )


def test_a_ready_sandbox_is_just_used():
    sandbox = SandboxFactory(state=SandboxState.READY)
    assert claim(sandbox.task).outcome == "ready"


def test_no_attempt_is_started_when_nobody_waits_for_it():
    task = TaskFactory()
    assert claim(task, needed=lambda: False).outcome == "unneeded"
    assert not Sandbox.objects.filter(task=task).exists()


def test_a_failed_attempt_is_followed_by_a_fresh_one():
    failed = SandboxFactory(state=SandboxState.FAILED, key="t-old")
    fresh = claim(failed.task)
    assert fresh.outcome == "lead" and fresh.sandbox.pk != failed.pk


def test_a_workspace_over_its_share_waits_for_a_slot(settings):
    settings.WORKBENCH_MAX_PROVISIONING_PER_WORKSPACE = 1
    first, second = TaskFactory(), None
    second = TaskFactory(workspace=first.workspace)
    other_workspace = TaskFactory()
    assert claim(first).outcome == "lead"
    queued = claim(second, owner="run-2")
    assert queued.outcome == "busy"
    # Queued as a row, leaseless and never started: no run holds it.
    assert (queued.sandbox.lease_expires_at, queued.sandbox.fence) == (None, 0)
    assert claim(other_workspace, owner="run-3").outcome == "lead"  # its own share

    assert claim(second, owner="run-2").outcome == "busy"  # still no slot
    Sandbox.objects.filter(task=first).update(state=SandboxState.READY, lease_expires_at=None)
    started = claim(second, owner="run-2")
    assert (started.outcome, started.sandbox.pk, started.sandbox.fence) == (
        "lead",
        queued.sandbox.pk,
        1,
    )


def test_an_expired_lease_counts_for_no_slot(settings):
    settings.WORKBENCH_MAX_PROVISIONING_PER_WORKSPACE = 1
    dead = SandboxFactory(
        state=SandboxState.PROVISIONING, fence=1, lease_expires_at=now() - timedelta(seconds=1)
    )
    task = TaskFactory(workspace=dead.task.workspace)
    assert claim(task).outcome == "lead"
