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
