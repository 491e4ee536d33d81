"""The workers' upkeep: one round at a time across workers, and the ready-sandbox watch."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.utils.timezone import now

from sandboxes import services as sandbox_services
from sandboxes.models import Sandbox, SandboxState
from tests.factories import SandboxFactory, TabFactory
from workbench import reconciler, services, upkeep
from workbench.models import TabState, WorkbenchTab

pytestmark = pytest.mark.django_db


class Lease:
    """The upkeep's Redis lease as redis-py's Lock gives it: one holder, by token."""

    def __init__(self) -> None:
        self.holder: str | None = None

    def lock(self, name: str, **_: object) -> Lease.Held:
        return Lease.Held(self)

    class Held:
        def __init__(self, lease: Lease) -> None:
            self.lease = lease
            self.token: str | None = None

        def acquire(self, *, token: str) -> bool:
            if self.lease.holder is not None:
                return False
            self.lease.holder = self.token = token
            return True

        def release(self) -> None:
            assert self.lease.holder == self.token, "released by someone else's handle"
            self.lease.holder = None

        def extend(self, seconds: float, *, replace_ttl: bool) -> bool:
            return True


def test_only_the_worker_holding_the_lease_runs_a_round(monkeypatch):
    rounds = mock.Mock(return_value={})
    monkeypatch.setattr(reconciler, "reconcile", rounds)
    monkeypatch.setattr(services, "sandboxes_watch", mock.Mock(return_value=0))
    lease = Lease()
    lease.holder = "worker-a"  # a round of worker-a in progress
    assert upkeep.run_once(lease, "worker-b") is False  # type: ignore[arg-type]
    lease.holder = None
    assert upkeep.run_once(lease, "worker-b") is True  # type: ignore[arg-type]
    assert lease.holder is None  # released by its owner once the round ended
    assert rounds.call_count == 1


def test_a_failing_round_still_releases_its_lease(monkeypatch):
    monkeypatch.setattr(reconciler, "reconcile", mock.Mock(side_effect=RuntimeError("db away")))
    lease = Lease()
    with pytest.raises(RuntimeError):
        upkeep.run_once(lease, "worker-a")  # type: ignore[arg-type]
    assert lease.holder is None


def test_a_ready_sandbox_whose_server_stays_silent_is_lost_with_its_tabs(settings, monkeypatch):
    settings.WORKBENCH_HEALTH_GRACE = 5
    sandbox = SandboxFactory(state=SandboxState.READY)
    tab = TabFactory(task=sandbox.task, sandbox=sandbox, state=TabState.READY)
    healthy = {"answer": False}
    monkeypatch.setattr(sandbox_services, "sandbox_healthy", lambda **_: healthy["answer"])

    assert services.sandboxes_watch() == 0  # one missed check is not a death
    assert Sandbox.objects.get(pk=sandbox.pk).unhealthy_since is not None
    healthy["answer"] = True
    services.sandboxes_watch()
    assert Sandbox.objects.get(pk=sandbox.pk).unhealthy_since is None  # it answered again

    healthy["answer"] = False
    services.sandboxes_watch()
    Sandbox.objects.filter(pk=sandbox.pk).update(unhealthy_since=now() - timedelta(seconds=6))
    with mock.patch("workbench.workflows.start_sandbox_release"):
        assert services.sandboxes_watch() == 1
    assert Sandbox.objects.get(pk=sandbox.pk).state == SandboxState.FAILED
    lost = WorkbenchTab.objects.get(pk=tab.pk)
    assert (lost.state, lost.error_code) == (TabState.ERROR, "sandbox_lost")
