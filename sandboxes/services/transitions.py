"""A sandbox's state transitions (each a conditional update from its declared sources,
recording `sandbox.updated` in the same transaction), and what they all read: the
sandbox's workspace and its provider handle."""

from __future__ import annotations

from django.utils.timezone import now

from core.events import record_event
from core.locks import workspace_transaction
from core.transitions import transition
from sandboxes.models import (
    SANDBOX_TRANSITIONS,
    Sandbox,
    SandboxState,
)
from sandboxes.providers.base import AgentModels, SandboxHandle
from sandboxes.serializers import sandbox_payload


def handle_of(sandbox: Sandbox) -> SandboxHandle:
    return SandboxHandle(
        base_url=sandbox.base_url, token=sandbox.token, workdir=sandbox.workdir, pid=sandbox.pid
    )


def workspace_id_of(sandbox_id: int) -> int:
    return Sandbox.objects.filter(pk=sandbox_id).values_list("task__workspace_id", flat=True).get()


def record_sandbox(sandbox_id: int) -> None:
    sandbox = Sandbox.objects.prefetch_related("steps").get(pk=sandbox_id)
    record_event(workspace_id_of(sandbox_id), "sandbox.updated", sandbox_payload(sandbox))


def sandbox_mark_ready(
    *, sandbox_id: int, fence: int, handle: SandboxHandle, models: AgentModels | None = None
) -> bool:
    """provisioning -> ready, only for the run holding `fence`; with the models its server
    offers for the agent."""
    models = models or AgentModels()
    with workspace_transaction(workspace_id_of(sandbox_id)):
        updated = transition(
            Sandbox.objects.filter(pk=sandbox_id, fence=fence),
            table=SANDBOX_TRANSITIONS,
            to=SandboxState.READY,
            base_url=handle.base_url,
            token=handle.token,
            workdir=handle.workdir,
            pid=handle.pid,
            agent_models=[list(option) for option in models.options],
            default_model=models.default,
            ready_at=now(),
            lease_owner="",
            lease_expires_at=None,
        )
        if updated != 1:
            return False
        record_sandbox(sandbox_id)
    return True


def sandbox_fail(*, sandbox_id: int, code: str, message: str, fence: int | None = None) -> bool:
    """provisioning|ready -> failed. With a fence, only for the run holding it.

    Runs inside the caller's transaction when there is one, so the tabs that waited on the
    sandbox can fail in the same commit.
    """
    with workspace_transaction(workspace_id_of(sandbox_id)):
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
        record_sandbox(sandbox_id)
    return True


def sandbox_begin_destroy(*, sandbox_id: int) -> bool:
    """Any state but destroyed -> destroying; the caller then runs sandbox_destroy."""
    with workspace_transaction(workspace_id_of(sandbox_id)):
        updated = transition(
            Sandbox.objects.filter(pk=sandbox_id),
            table=SANDBOX_TRANSITIONS,
            to=SandboxState.DESTROYING,
            lease_owner="",
            lease_expires_at=None,
        )
        if updated != 1:
            return False
        record_sandbox(sandbox_id)
    return True
