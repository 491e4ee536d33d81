"""A provisioning run: the provider's steps under the lease, each recorded as it happens,
ending in the ready mark."""

from __future__ import annotations

import contextvars
import logging
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import F
from django.utils.timezone import now

from core.events import record_event
from core.locks import workspace_transaction
from sandboxes import providers
from sandboxes.models import (
    ProvisioningStep,
    Sandbox,
    SandboxState,
    StepOutcome,
)
from sandboxes.providers.base import (
    AgentModels,
    Provider,
    ProviderError,
    SandboxHandle,
    SandboxSpec,
    StepLog,
)
from sandboxes.selectors import step_estimates
from sandboxes.serializers import PlannedStep, step_event_payload
from sandboxes.services.leases import LeaseLost, lease_until
from sandboxes.services.transitions import record_sandbox, sandbox_mark_ready

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from datetime import datetime


logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Owner:
    """A sandbox's task and workspace, read once per provisioning run (they never change):
    recording each step otherwise re-read them three times on each side of the step."""

    task_id: int
    workspace_id: int


def _owner_of(sandbox_id: int) -> _Owner:
    task_id, workspace_id = (
        Sandbox.objects.filter(pk=sandbox_id).values_list("task_id", "task__workspace_id").get()
    )
    return _Owner(task_id=task_id, workspace_id=workspace_id)


# A step's live log: the tail members see, and how often a running step's log is written
# (each write takes the workspace lock, like every event).
LOG_LIMIT = 4000
LOG_WRITE_SECONDS = 0.5
# A progress meter's line ("Receiving objects:  45% (450/1000)"): the next one of the same
# phase replaces it rather than adding a line per percent.
_METER = re.compile(r"^([^:]{1,60}):\s+\d{1,3}%")


class _LiveLog:
    """The log of one running step (a StepLog): kept on the step row, written and broadcast
    at most every LOG_WRITE_SECONDS while the step runs, and with the step's outcome. Called
    on the worker's own thread, between the provider's own calls."""

    def __init__(self, step: ProvisioningStep, owner: _Owner) -> None:
        self.step, self.owner = step, owner
        self.lines: list[str] = []
        self.written_at = time.monotonic()

    def __call__(self, line: str) -> None:
        line = line.strip()[:500]
        if not line:
            return
        meter = _METER.match(line)
        last = _METER.match(self.lines[-1]) if self.lines else None
        if meter and last and meter.group(1) == last.group(1):
            self.lines[-1] = line
        else:
            self.lines.append(line)
        text = "\n".join(self.lines)
        if len(text) > LOG_LIMIT:
            text = text[-LOG_LIMIT:]
            self.lines = text.split("\n")
        self.step.log = text
        if time.monotonic() - self.written_at >= LOG_WRITE_SECONDS:
            self.written_at = time.monotonic()
            try:
                with workspace_transaction(self.owner.workspace_id):
                    ProvisioningStep.objects.filter(pk=self.step.pk).update(log=text)
                    _record_step(self.step, self.owner)
            except DatabaseError:
                # The log is for watching; a write that fails (a busy SQLite, a dropped
                # connection) must not fail the step. It is written with the outcome.
                logger.warning("writing step %s's live log failed", self.step.pk, exc_info=True)


class _StepRecorder:
    """Records a provisioning run's steps as they happen, for operators and live clients.

    A step's start is written (renewing the lease, stopping the run if it was taken over)
    before it runs; the first also writes the run's plan. Its success is written with the
    next step's start, or with the sandbox's ready mark: one transaction per step boundary
    instead of two, since each locks the workspace (docs/benchmarks.md). A failure is
    written at once.
    """

    def __init__(self, sandbox_id: int, fence: int, owner: _Owner, plan: list[PlannedStep]) -> None:
        self.sandbox_id, self.fence, self.owner = sandbox_id, fence, owner
        self.succeeded: ProvisioningStep | None = None  # finished, not yet written
        self.plan: list[PlannedStep] | None = plan  # None once written

    @contextmanager
    def boundary(self) -> Iterator[None]:
        """A workspace transaction that also writes the last step's success; if it rolls
        back, that success is still to be written."""
        pending = self.succeeded
        try:
            with workspace_transaction(self.owner.workspace_id):
                self.flush()
                yield
        except BaseException:
            self.succeeded = pending
            raise

    @contextmanager
    def step(self, name: str) -> Iterator[StepLog]:
        with self.boundary():
            planned: dict[str, object] = {}
            if self.plan is not None:
                planned = {"plan": self.plan, "version": F("version") + 1}
            renewed = Sandbox.objects.filter(
                pk=self.sandbox_id, state=SandboxState.PROVISIONING, fence=self.fence
            ).update(lease_expires_at=lease_until(), **planned)
            if not renewed:
                raise LeaseLost(f"sandbox {self.sandbox_id} fence {self.fence}")
            if planned:
                record_sandbox(self.sandbox_id)
            step = ProvisioningStep.objects.create(
                sandbox_id=self.sandbox_id, name=name, fence=self.fence, started_at=now()
            )
            _record_step(step, self.owner)
        logger.info("provisioning step %s started", name)
        self.plan = None  # committed
        keeper = _LeaseKeeper(self.sandbox_id, self.fence)
        try:
            with keeper:
                yield _LiveLog(step, self.owner)
            if keeper.lost:
                raise LeaseLost(
                    f"sandbox {self.sandbox_id} fence {self.fence} was taken over during {name}"
                )
        except Exception as exc:
            if isinstance(exc, ProviderError):
                exc.step = name
                detail = exc.message
            else:
                detail = f"{type(exc).__name__}: {exc}"
            _finish_step(step, StepOutcome.FAILED, detail, self.owner)
            raise
        step.outcome, step.finished_at = StepOutcome.SUCCEEDED, now()
        self.succeeded = step

    def flush(self) -> None:
        """Write the last step's success (in the caller's transaction, if any)."""
        step = self.succeeded
        if step is not None:
            _finish_step(step, step.outcome, "", self.owner, finished_at=step.finished_at)
            self.succeeded = None


class _LeaseKeeper:
    """Renews the lease every third of its length while a long step runs (a clone can take
    minutes), so that only a dead or hung run ever loses it. Short steps never start it."""

    def __init__(self, sandbox_id: int, fence: int):
        self.sandbox_id, self.fence = sandbox_id, fence
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=contextvars.copy_context().run,  # its lines carry the run's ids
            args=(self._run,),
            name=f"lease-{sandbox_id}",
            daemon=True,
        )

    def __enter__(self) -> _LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        interval = settings.WORKBENCH_PROVISION_LEASE_SECONDS / 3
        try:
            while not self._stop.wait(interval):
                renewed = Sandbox.objects.filter(
                    pk=self.sandbox_id, state=SandboxState.PROVISIONING, fence=self.fence
                ).update(lease_expires_at=lease_until())
                if not renewed:
                    self.lost = True
                    return
        finally:
            connection.close()  # this thread's own database connection


def _record_step(step: ProvisioningStep, owner: _Owner) -> None:
    payload = step_event_payload(step, task_id=owner.task_id)
    record_event(owner.workspace_id, "provisioning.step", payload)


def _finish_step(
    step: ProvisioningStep,
    outcome: str,
    detail: str,
    owner: _Owner,
    finished_at: datetime | None = None,
) -> None:
    with workspace_transaction(owner.workspace_id):
        step.outcome, step.detail = outcome, detail[:2000]
        step.finished_at = finished_at or now()
        step.save(update_fields=["outcome", "detail", "finished_at", "log"])
        _record_step(step, owner)
    took = (step.finished_at - step.started_at).total_seconds() * 1000
    logger.info("provisioning step %s %s in %.0f ms", step.name, outcome, took)


def _agent_models(provider: Provider, handle: SandboxHandle, agent: str) -> AgentModels:
    """The models the new server offers; a server that cannot say still serves sessions
    (tabs then keep the agent's default, and a chosen model is tried as it is)."""
    try:
        return provider.agent_models(handle, agent=agent)
    except ProviderError as exc:
        logger.warning("listing %s's models failed: %s", agent, exc.message)
        return AgentModels()


def _plan(provider: Provider, spec: SandboxSpec, owner: _Owner) -> list[PlannedStep]:
    """The steps the run will take, each with its estimate (sandboxes.selectors)."""
    names = provider.plan(spec)
    estimates = step_estimates(
        task_id=owner.task_id,
        workspace_id=owner.workspace_id,
        repository=spec.repository,
        names=names,
    )
    return [{"name": name, "estimate_ms": estimates.get(name)} for name in names]


def _destroy_if_ended(provider: Provider, sandbox_id: int, key: str) -> None:
    """A run that lost its lease because the sandbox is being destroyed (archived, or
    discarded by an operator) may have started its server after the destroy ran: stop what
    it made. A lease lost to another run of the same sandbox is left alone (that run uses
    the same key and reuses the server)."""
    state = Sandbox.objects.filter(pk=sandbox_id).values_list("state", flat=True).first()
    if state in (None, SandboxState.DESTROYING, SandboxState.DESTROYED):
        provider.destroy(key, None)


def sandbox_provision(
    *,
    sandbox_id: int,
    fence: int,
    spec: SandboxSpec,
    on_ready: Callable[[], object] | None = None,
) -> bool:
    """Run the provider's steps under the lease; True when this run made the sandbox ready.

    `on_ready` runs in the transaction that marks it ready (the hand-off to whatever waits
    on it commits with the mark, or not at all). Raises ProviderError when a step fails
    (the caller fails the sandbox and its waiting tabs together) and LeaseLost when another
    run took over.
    """
    sandbox = Sandbox.objects.get(pk=sandbox_id)
    provider = providers.get_provider(sandbox.provider)

    owner = _owner_of(sandbox_id)
    steps = _StepRecorder(sandbox_id, fence, owner, _plan(provider, spec, owner))
    try:
        try:
            handle = provider.create(spec, step=steps.step)
        except LeaseLost:
            _destroy_if_ended(provider, sandbox_id, spec.key)
            raise
        models = _agent_models(provider, handle, spec.agent)
        with steps.boundary():
            made_ready = sandbox_mark_ready(
                sandbox_id=sandbox_id, fence=fence, handle=handle, models=models
            )
            if made_ready and on_ready is not None:
                on_ready()
    except BaseException:
        try:
            steps.flush()  # a step that succeeded before the run failed
        except Exception:
            logger.exception("recording sandbox %s's last step failed", sandbox_id)
        raise
    if made_ready:
        return True
    logger.info(
        "sandbox %s was taken over while provisioning; leaving it to the new run", sandbox_id
    )
    return False
