"""Every write to sandboxes: claiming the provisioning lease, running and recording the
provider's steps, and the sandbox's state transitions (each a conditional update)."""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from django.conf import settings
from django.db import connection
from django.db.models import F
from django.utils.timezone import now

from core.events import record_event
from core.locks import workspace_transaction
from core.transitions import transition
from sandboxes.models import (
    LIVE_STATES,
    SANDBOX_TRANSITIONS,
    ProvisioningStep,
    Sandbox,
    SandboxState,
    StepOutcome,
)
from sandboxes.providers import get_provider
from sandboxes.providers.base import ProviderError, SandboxHandle, SandboxSpec
from sandboxes.serializers import sandbox_payload, step_event_payload

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from sandboxes.providers.base import PromptResult

logger = logging.getLogger(__name__)

ClaimOutcome = Literal["ready", "lead", "busy", "queued", "exhausted", "gone"]


class LeaseLost(Exception):
    """Another run took over this sandbox's provisioning; this run must stop quietly."""


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    sandbox: Sandbox | None


def handle_of(sandbox: Sandbox) -> SandboxHandle:
    return SandboxHandle(
        base_url=sandbox.base_url, token=sandbox.token, workdir=sandbox.workdir, pid=sandbox.pid
    )


def _workspace_id(sandbox_id: int) -> int:
    return Sandbox.objects.filter(pk=sandbox_id).values_list("task__workspace_id", flat=True).get()


def _record_sandbox(sandbox_id: int) -> None:
    sandbox = Sandbox.objects.prefetch_related("steps").get(pk=sandbox_id)
    record_event(_workspace_id(sandbox_id), "sandbox.updated", sandbox_payload(sandbox))


def _lease_until() -> object:
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
        _record_sandbox(sandbox.pk)
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
    workspace_id = _workspace_id(sandbox_id)
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
        ).update(lease_owner=owner, lease_expires_at=_lease_until(), fence=F("fence") + 1)
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


class _StepRecorder:
    """Records a provisioning run's steps as they happen, for operators and live clients.

    A step's start is written (renewing the lease, stopping the run if it was taken over)
    before it runs. Its success is written with the next step's start, or with the
    sandbox's ready mark: one transaction per step boundary instead of two, since each
    locks the workspace (docs/benchmarks.md). A failure is written at once.
    """

    def __init__(self, sandbox_id: int, fence: int, owner: _Owner) -> None:
        self.sandbox_id, self.fence, self.owner = sandbox_id, fence, owner
        self.succeeded: ProvisioningStep | None = None  # finished, not yet written

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
    def step(self, name: str) -> Iterator[None]:
        with self.boundary():
            renewed = Sandbox.objects.filter(
                pk=self.sandbox_id, state=SandboxState.PROVISIONING, fence=self.fence
            ).update(lease_expires_at=_lease_until())
            if not renewed:
                raise LeaseLost(f"sandbox {self.sandbox_id} fence {self.fence}")
            step = ProvisioningStep.objects.create(
                sandbox_id=self.sandbox_id, name=name, fence=self.fence, started_at=now()
            )
            _record_step(step, self.owner)
        keeper = _LeaseKeeper(self.sandbox_id, self.fence)
        try:
            with keeper:
                yield
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
        self._thread = threading.Thread(target=self._run, name=f"lease-{sandbox_id}", daemon=True)

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
                ).update(lease_expires_at=_lease_until())
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
        step.save(update_fields=["outcome", "detail", "finished_at"])
        _record_step(step, owner)


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
    provider = get_provider(sandbox.provider)

    owner = _owner_of(sandbox_id)
    steps = _StepRecorder(sandbox_id, fence, owner)
    try:
        handle = provider.create(spec, step=steps.step)
        with steps.boundary():
            made_ready = sandbox_mark_ready(sandbox_id=sandbox_id, fence=fence, handle=handle)
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


def sandbox_mark_ready(*, sandbox_id: int, fence: int, handle: SandboxHandle) -> bool:
    """provisioning -> ready, only for the run holding `fence`."""
    with workspace_transaction(_workspace_id(sandbox_id)):
        updated = transition(
            Sandbox.objects.filter(pk=sandbox_id, fence=fence),
            table=SANDBOX_TRANSITIONS,
            to=SandboxState.READY,
            base_url=handle.base_url,
            token=handle.token,
            workdir=handle.workdir,
            pid=handle.pid,
            ready_at=now(),
            lease_owner="",
            lease_expires_at=None,
        )
        if updated != 1:
            return False
        _record_sandbox(sandbox_id)
    return True


def sandbox_fail(*, sandbox_id: int, code: str, message: str, fence: int | None = None) -> bool:
    """provisioning|ready -> failed. With a fence, only for the run holding it.

    Runs inside the caller's transaction when there is one, so the tabs that waited on the
    sandbox can fail in the same commit.
    """
    with workspace_transaction(_workspace_id(sandbox_id)):
        rows = Sandbox.objects.filter(pk=sandbox_id)
        sources = None
        if fence is not None:
            # A fenced failure is a provisioning run's: never fail a sandbox that run (or
            # its successor) made ready in the meantime.
            rows, sources = rows.filter(fence=fence), [SandboxState.PROVISIONING]
        updated = transition(
            rows,
            table=SANDBOX_TRANSITIONS,
            to=SandboxState.FAILED,
            sources=sources,
            error_code=code,
            error_message=message[:2000],
            lease_owner="",
            lease_expires_at=None,
        )
        if updated != 1:
            return False
        _record_sandbox(sandbox_id)
    return True


def sandbox_begin_destroy(*, sandbox_id: int) -> bool:
    """Any state but destroyed -> destroying; the caller then runs sandbox_destroy."""
    with workspace_transaction(_workspace_id(sandbox_id)):
        updated = transition(
            Sandbox.objects.filter(pk=sandbox_id),
            table=SANDBOX_TRANSITIONS,
            to=SandboxState.DESTROYING,
            lease_owner="",
            lease_expires_at=None,
        )
        if updated != 1:
            return False
        _record_sandbox(sandbox_id)
    return True


def sandbox_destroy(*, sandbox_id: int) -> bool:
    """destroying -> destroyed: stop its server and remove its files. Safe to repeat."""
    sandbox = Sandbox.objects.filter(pk=sandbox_id, state=SandboxState.DESTROYING).first()
    if sandbox is None:
        return False
    provider = get_provider(sandbox.provider)
    provider.destroy(sandbox.key, handle_of(sandbox) if sandbox.base_url else None)
    with workspace_transaction(_workspace_id(sandbox_id)):
        updated = transition(
            Sandbox.objects.filter(pk=sandbox_id),
            table=SANDBOX_TRANSITIONS,
            to=SandboxState.DESTROYED,
            destroyed_at=now(),
        )
        if updated == 1:
            _record_sandbox(sandbox_id)
    return updated == 1


def sandbox_release_failed(*, sandbox_id: int) -> bool:
    """Stop whatever a failed sandbox still runs and remove its files; the row keeps its
    state and error for users and operators. Safe to repeat."""
    sandbox = Sandbox.objects.filter(pk=sandbox_id, state=SandboxState.FAILED).first()
    if sandbox is None:
        return False
    provider = get_provider(sandbox.provider)
    provider.destroy(sandbox.key, handle_of(sandbox) if sandbox.base_url else None)
    Sandbox.objects.filter(pk=sandbox_id, state=SandboxState.FAILED).update(released_at=now())
    return True


def sandbox_healthy(*, sandbox: Sandbox) -> bool:
    """Whether a ready sandbox's server answers (a provider error counts as no)."""
    try:
        return get_provider(sandbox.provider).health(handle_of(sandbox))
    except ProviderError:
        return False


def sandbox_session_open(*, sandbox: Sandbox, server_id: str, agent: str) -> str:
    """Start an agent session in a ready sandbox; returns the session id."""
    provider = get_provider(sandbox.provider)
    return provider.create_session(
        handle_of(sandbox), server_id=server_id, agent=agent, cwd=sandbox.workdir
    )


def sandbox_session_prompt(
    *,
    sandbox: Sandbox,
    server_id: str,
    session_id: str,
    text: str,
    last_event_id: str,
    on_text: Callable[[str], None],
) -> PromptResult:
    """Run one agent turn in the tab's session; raises ProviderError / SandboxGone."""
    provider = get_provider(sandbox.provider)
    return provider.prompt(
        handle_of(sandbox),
        server_id=server_id,
        session_id=session_id,
        text=text,
        last_event_id=last_event_id,
        on_text=on_text,
    )


def sandbox_session_cancel(*, sandbox: Sandbox, server_id: str, session_id: str) -> None:
    provider = get_provider(sandbox.provider)
    provider.cancel(handle_of(sandbox), server_id=server_id, session_id=session_id)


def sandbox_session_close(*, sandbox: Sandbox, server_id: str) -> None:
    provider = get_provider(sandbox.provider)
    provider.destroy_session(handle_of(sandbox), server_id=server_id)
