"""What members watch while a sandbox is made: the run's plan (every step, with an estimate
from earlier runs) and each step's live log. The provider is a double; the real clone's
progress is tests/integration/test_tab_lifecycle.py."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import DatabaseError
from django.utils.timezone import now

from core.models import Event
from sandboxes import services
from sandboxes.models import ProvisioningStep, Sandbox, SandboxState, StepOutcome
from sandboxes.providers.base import ProviderError, SandboxHandle, SandboxSpec
from sandboxes.selectors import step_estimates
from sandboxes.services import provisioning
from tests.factories import SandboxFactory, TaskFactory, WorkspaceFactory
from tests.unit.sandboxes.test_steps import StepsProvider, provision

pytestmark = pytest.mark.django_db


class LoggingProvider(StepsProvider):
    """One step, `clone`, that prints `lines`; it fails after them when `fail` is set."""

    def __init__(self, lines: list[str], fail: bool = False) -> None:
        super().__init__(["clone"])
        self.lines, self.fail = lines, fail

    def create(self, spec: SandboxSpec, *, step) -> SandboxHandle:
        with step("clone") as log:
            for line in self.lines:
                log(line)
            if self.fail:
                raise ProviderError("clone broke", code="clone_failed")
        return SandboxHandle(base_url="http://127.0.0.1:1", token="t")


def step_events(sandbox: Sandbox) -> list[dict]:
    events = Event.objects.filter(workspace=sandbox.task.workspace, name="provisioning.step")
    return [e.data for e in events.order_by("seq")]


def test_a_steps_log_keeps_each_line_and_one_line_per_progress_meter():
    lines = [
        "Cloning https://example.org/repo.git",
        "Receiving objects:  10% (1/10)",
        "Receiving objects: 100% (10/10), done.",
        "Resolving deltas:  50% (1/2)",
        "Resolving deltas: 100% (2/2), done.",
        "Cloned",
    ]
    sandbox, _ = provision(LoggingProvider(lines))
    expected = "\n".join([lines[0], lines[2], lines[4], lines[5]])
    assert ProvisioningStep.objects.get(sandbox=sandbox).log == expected
    assert step_events(sandbox)[-1]["log"] == expected  # the success carries it to clients


def test_a_running_step_broadcasts_its_log_before_it_ends(monkeypatch):
    monkeypatch.setattr(provisioning, "LOG_WRITE_SECONDS", 0)
    sandbox, _ = provision(LoggingProvider(["first", "second"]))
    running = [e["log"] for e in step_events(sandbox) if e["outcome"] == StepOutcome.RUNNING]
    assert running == ["", "first", "first\nsecond"]  # the start, then each write


def test_the_log_keeps_its_last_lines_within_the_limit():
    lines = [f"line {n:05d} " + "x" * 80 for n in range(2000)]
    sandbox, _ = provision(LoggingProvider(lines))
    log = ProvisioningStep.objects.get(sandbox=sandbox).log
    assert len(log) <= provisioning.LOG_LIMIT
    assert log.endswith(lines[-1]) and "line 01999" in log and "line 00000" not in log


def test_a_failed_step_keeps_what_it_printed():
    sandbox, outcome = provision(LoggingProvider(["Cloning it"], fail=True))
    assert isinstance(outcome, ProviderError)
    step = ProvisioningStep.objects.get(sandbox=sandbox)
    assert (step.outcome, step.log, step.detail) == (
        StepOutcome.FAILED,
        "Cloning it",
        "clone broke",
    )


def test_the_plan_is_written_and_broadcast_before_the_first_step():
    sandbox, _ = provision(StepsProvider(["a", "b"]))
    assert sandbox.plan == [{"name": "a", "estimate_ms": None}, {"name": "b", "estimate_ms": None}]
    names = list(
        Event.objects.filter(workspace=sandbox.task.workspace)
        .order_by("seq")
        .values_list("name", "data")
    )
    first_step = next(i for i, (name, _) in enumerate(names) if name == "provisioning.step")
    planned = [data["plan"] for name, data in names[:first_step] if name == "sandbox.updated"]
    assert planned[-1] == sandbox.plan


def _ran(task, name: str, ms: int, days_ago: int = 1) -> None:
    """A finished attempt of `task` whose step `name` took `ms`."""
    sandbox = SandboxFactory(task=task, state=SandboxState.FAILED)
    started = now() - timedelta(days=days_ago)
    ProvisioningStep.objects.create(
        sandbox=sandbox,
        name=name,
        outcome=StepOutcome.SUCCEEDED,
        started_at=started,
        finished_at=started + timedelta(milliseconds=ms),
    )


def test_estimates_come_from_the_task_then_its_repository_never_another_workspace():
    workspace = WorkspaceFactory()
    task = TaskFactory(workspace=workspace, repository="https://example.org/a.git")
    for ms in (100, 300, 900):
        _ran(task, "clone", ms)
    sibling = TaskFactory(workspace=workspace, repository="https://example.org/a.git")
    _ran(sibling, "clone", 5_000)  # the task's own runs come first
    _ran(sibling, "start_server", 40)
    _ran(TaskFactory(workspace=workspace, repository="https://example.org/b.git"), "install", 7)
    outsider = TaskFactory(repository="https://example.org/a.git")  # another workspace
    _ran(outsider, "install", 99)
    estimates = step_estimates(
        task_id=task.pk,
        workspace_id=workspace.pk,
        repository=task.repository,
        names=["clone", "start_server", "install"],
    )
    assert estimates == {"clone": 300, "start_server": 40}


def test_an_estimate_is_the_median_of_the_last_runs_only():
    task = TaskFactory()
    for days_ago, ms in enumerate([10, 20, 30, 40, 50, 10_000, 10_000, 10_000], start=1):
        _ran(task, "clone", ms, days_ago=days_ago)
    estimates = step_estimates(
        task_id=task.pk, workspace_id=task.workspace_id, repository="", names=["clone"]
    )
    assert estimates == {"clone": 30}


def test_a_live_log_write_that_fails_does_not_fail_the_step(monkeypatch):
    monkeypatch.setattr(provisioning, "LOG_WRITE_SECONDS", 0)
    record = provisioning._record_step

    def flaky(step, owner):
        if step.finished_at is None and step.log:  # the running step's live writes only
            raise DatabaseError("database is locked")
        record(step, owner)

    monkeypatch.setattr(provisioning, "_record_step", flaky)
    sandbox, outcome = provision(LoggingProvider(["first", "second"]))
    assert outcome is True
    step = ProvisioningStep.objects.get(sandbox=sandbox)
    assert (step.outcome, step.log) == (StepOutcome.SUCCEEDED, "first\nsecond")


class DestroyedMidRun(StepsProvider):
    """Its sandbox is destroyed (archived, or discarded by an operator) while `start` runs;
    records what `destroy` is asked to stop."""

    def __init__(self) -> None:
        super().__init__(["start", "wait"])
        self.destroyed: list[str] = []

    def create(self, spec: SandboxSpec, *, step) -> SandboxHandle:
        with step("start"):
            sandbox = Sandbox.objects.get(key=spec.key)
            assert services.sandbox_begin_destroy(sandbox_id=sandbox.pk)
        with step("wait"):  # the lease is gone: LeaseLost before this step
            raise AssertionError("a run whose sandbox is being destroyed went on")
        return SandboxHandle(base_url="http://127.0.0.1:1", token="t")

    def destroy(self, key: str, handle: SandboxHandle | None) -> None:
        self.destroyed.append(key)


def test_a_run_whose_sandbox_was_destroyed_meanwhile_stops_what_it_started():
    """The destroy may have run before this run started its server: the run stops it."""
    provider = DestroyedMidRun()
    with pytest.raises(services.LeaseLost):
        provision(provider)
    sandbox = Sandbox.objects.get()
    assert sandbox.state == SandboxState.DESTROYING
    assert provider.destroyed == [sandbox.key]
