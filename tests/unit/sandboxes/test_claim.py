"""sandbox_ensure and sandbox_lease: one sandbox and one run per task, leases, and a fair
share of runs per workspace."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils.timezone import now

from sandboxes import services
from sandboxes.models import Sandbox, SandboxState
from tests.factories import SandboxFactory, TaskFactory

pytestmark = pytest.mark.django_db


def ensure(task) -> tuple[Sandbox, bool]:
    return services.sandbox_ensure(
        workspace_id=task.workspace_id, task_id=task.pk, provider="local", agent="mock"
    )


def lease(sandbox: Sandbox, owner: str = "run-1") -> services.Claim:
    return services.sandbox_lease(sandbox_id=sandbox.pk, owner=owner)


def test_the_first_ensure_creates_the_sandbox_unstarted_and_later_ones_find_it():
    task = TaskFactory()
    sandbox, created = ensure(task)
    assert created
    assert (sandbox.state, sandbox.fence, sandbox.lease_expires_at) == (
        SandboxState.PROVISIONING,
        0,
        None,
    )
    again, created_again = ensure(task)
    assert (again.pk, created_again) == (sandbox.pk, False)
    assert Sandbox.objects.filter(task=task).count() == 1


def test_the_first_lease_leads_and_a_live_lease_is_not_taken_even_by_its_owner():
    sandbox, _ = ensure(TaskFactory())
    first = lease(sandbox, owner="same")
    assert (first.outcome, first.sandbox.fence) == ("lead", 1)
    assert lease(sandbox, owner="same").outcome == "busy"
    assert lease(sandbox, owner="other").outcome == "busy"


def test_an_expired_lease_is_taken_over_with_a_new_fence():
    sandbox = SandboxFactory(
        state=SandboxState.PROVISIONING, fence=1, lease_expires_at=now() - timedelta(seconds=1)
    )
    taken = lease(sandbox, owner="rescuer")
    assert taken.outcome == "lead"
    assert (taken.sandbox.pk, taken.sandbox.fence, taken.sandbox.lease_owner) == (
        sandbox.pk,
        2,
        "rescuer",
    )


def test_a_ready_or_failed_sandbox_has_nothing_to_run():
    assert lease(SandboxFactory(state=SandboxState.READY)).outcome == "ready"
    assert lease(SandboxFactory(state=SandboxState.FAILED, key="t-f")).outcome == "gone"


def test_runs_that_keep_dying_are_exhausted(settings):
    settings.WORKBENCH_MAX_PROVISION_RUNS = 2
    sandbox = SandboxFactory(
        state=SandboxState.PROVISIONING, fence=2, lease_expires_at=now() - timedelta(seconds=1)
    )
    assert lease(sandbox).outcome == "exhausted"


def test_a_failed_attempt_is_followed_by_a_fresh_one():
    failed = SandboxFactory(state=SandboxState.FAILED, key="t-old")
    fresh, created = ensure(failed.task)
    assert created and fresh.pk != failed.pk


def test_a_workspace_over_its_share_waits_for_a_slot(settings):
    settings.WORKBENCH_MAX_PROVISIONING_PER_WORKSPACE = 1
    first = TaskFactory()
    second = TaskFactory(workspace=first.workspace)
    other_workspace = TaskFactory()
    running, _ = ensure(first)
    queued, _ = ensure(second)
    elsewhere, _ = ensure(other_workspace)
    assert lease(running).outcome == "lead"
    assert lease(queued, owner="run-2").outcome == "queued"
    assert lease(elsewhere, owner="run-3").outcome == "lead"  # its own share
    assert services.sandboxes_to_start(workspace_id=first.workspace_id) == []

    Sandbox.objects.filter(pk=running.pk).update(state=SandboxState.READY, lease_expires_at=None)
    assert services.sandboxes_to_start(workspace_id=first.workspace_id) == [queued.pk]
    started = lease(queued, owner="run-2")
    assert (started.outcome, started.sandbox.fence) == ("lead", 1)


def test_an_expired_lease_counts_for_no_slot(settings):
    settings.WORKBENCH_MAX_PROVISIONING_PER_WORKSPACE = 1
    dead = SandboxFactory(
        state=SandboxState.PROVISIONING, fence=1, lease_expires_at=now() - timedelta(seconds=1)
    )
    sandbox, _ = ensure(TaskFactory(workspace=dead.task.workspace))
    assert lease(sandbox).outcome == "lead"
