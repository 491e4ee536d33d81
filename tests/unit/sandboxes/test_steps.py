"""Provisioning steps: every step recorded with its outcome, in order, in the event log."""

from __future__ import annotations

from unittest import mock

import pytest

from core.models import Event
from sandboxes import services
from sandboxes.models import ProvisioningStep, Sandbox, SandboxState, StepOutcome
from sandboxes.providers.base import AgentModels, ProviderError, SandboxHandle, SandboxSpec
from tests.factories import TaskFactory

pytestmark = pytest.mark.django_db


class StepsProvider:
    """Runs the named steps; the one named in `fail_at` raises a ProviderError."""

    name = "local"

    def __init__(self, names: list[str], fail_at: str = "") -> None:
        self.names, self.fail_at = names, fail_at

    def plan(self, spec: SandboxSpec) -> list[str]:
        return list(self.names)

    def create(self, spec: SandboxSpec, *, step) -> SandboxHandle:
        for name in self.names:
            with step(name):
                if name == self.fail_at:
                    raise ProviderError(f"{name} broke", code="boom")
        return SandboxHandle(base_url="http://127.0.0.1:1", token="t")

    def agent_models(self, handle: SandboxHandle, *, agent: str) -> AgentModels:
        return AgentModels(options=(("mock", "Mock"), ("mock-fast", "Mock Fast")), default="mock")


def provision(provider: StepsProvider) -> tuple[Sandbox, bool | Exception]:
    task = TaskFactory()
    sandbox, _ = services.sandbox_ensure(
        workspace_id=task.workspace_id, task_id=task.pk, provider="local", agent="mock"
    )
    claim = services.sandbox_lease(sandbox_id=sandbox.pk, owner="o")
    spec = SandboxSpec(key=claim.sandbox.key, repository="", branch="", agent="mock")
    with mock.patch("sandboxes.providers.get_provider", return_value=provider):
        try:
            outcome: bool | Exception = services.sandbox_provision(
                sandbox_id=claim.sandbox.pk, fence=claim.sandbox.fence, spec=spec
            )
        except ProviderError as exc:
            outcome = exc
    return Sandbox.objects.get(pk=claim.sandbox.pk), outcome


def step_events(sandbox: Sandbox) -> list[tuple[str, str]]:
    events = Event.objects.filter(workspace=sandbox.task.workspace, name="provisioning.step")
    return [(e.data["name"], e.data["outcome"]) for e in events.order_by("seq")]


def test_every_step_succeeds_in_order_and_the_sandbox_is_ready():
    sandbox, made_ready = provision(StepsProvider(["a", "b", "c"]))
    assert made_ready is True
    assert sandbox.state == SandboxState.READY
    steps = ProvisioningStep.objects.filter(sandbox=sandbox).order_by("started_at")
    assert [(s.name, s.outcome) for s in steps] == [(n, StepOutcome.SUCCEEDED) for n in "abc"]
    assert all(s.finished_at is not None and s.finished_at >= s.started_at for s in steps)
    # Clients see each start, then its success, before the next step's start.
    started, succeeded = StepOutcome.RUNNING, StepOutcome.SUCCEEDED
    assert step_events(sandbox) == [
        ("a", started), ("a", succeeded), ("b", started), ("b", succeeded),
        ("c", started), ("c", succeeded),
    ]  # fmt: skip


def test_a_failed_step_is_recorded_after_the_success_before_it():
    sandbox, outcome = provision(StepsProvider(["a", "b", "c"], fail_at="b"))
    assert isinstance(outcome, ProviderError)
    steps = ProvisioningStep.objects.filter(sandbox=sandbox).order_by("started_at")
    assert [(s.name, s.outcome) for s in steps] == [
        ("a", StepOutcome.SUCCEEDED),
        ("b", StepOutcome.FAILED),
    ]
    assert steps[1].detail == "b broke"


def test_a_success_is_recorded_even_when_the_provider_fails_between_steps():
    class FailsAfterA(StepsProvider):
        def create(self, spec, *, step):
            with step("a"):
                pass
            raise ProviderError("no b", code="boom")

    sandbox, outcome = provision(FailsAfterA([]))
    assert isinstance(outcome, ProviderError)
    [step] = ProvisioningStep.objects.filter(sandbox=sandbox)
    assert (step.name, step.outcome) == ("a", StepOutcome.SUCCEEDED)


def test_a_success_is_recorded_even_when_marking_the_sandbox_ready_fails():
    broken = mock.patch(
        "sandboxes.services.provisioning.sandbox_mark_ready", side_effect=RuntimeError("gone")
    )
    with broken, pytest.raises(RuntimeError):
        provision(StepsProvider(["a"]))
    [step] = ProvisioningStep.objects.all()
    assert (step.name, step.outcome) == ("a", StepOutcome.SUCCEEDED)
