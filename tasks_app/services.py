"""Writes to tasks, and one run of a task's provisioning (take the lease, run the steps)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from django.db.models import F
from django.utils.timezone import now

from core.events import record_event
from core.locks import workspace_transaction
from sandboxes import services as sandbox_services
from sandboxes.providers.base import ProviderError, SandboxSpec
from tasks_app.models import Task
from tasks_app.serializers import task_payload

if TYPE_CHECKING:
    from collections.abc import Callable

    from django.contrib.auth.models import User

    from sandboxes.models import Sandbox

logger = logging.getLogger(__name__)


def _record_task(task: Task) -> None:
    record_event(task.workspace_id, "task.updated", task_payload(task))


def task_create(
    *,
    workspace_id: int,
    user: User | None,
    title: str,
    repository: str = "",
    branch: str = "",
    provider: str = "local",
    agent: str = "mock",
) -> Task:
    """Create a task; provisioning starts when its first tab is opened, never inline."""
    with workspace_transaction(workspace_id):
        task = Task.objects.create(
            workspace_id=workspace_id,
            created_by=user,
            title=title,
            repository=repository,
            branch=branch,
            provider=provider,
            agent=agent,
        )
        _record_task(task)
    return task


def _workspace_of(task_id: int) -> int:
    return Task.objects.values_list("workspace_id", flat=True).get(pk=task_id)


def task_update(
    *,
    task_id: int,
    title: str | None = None,
    repository: str | None = None,
    branch: str | None = None,
    agent: str | None = None,
) -> Task:
    """Edit a task. Repository, branch and agent apply from the next provisioning attempt:
    a live sandbox keeps what it was made with, and so do the tabs opened on it."""
    fields = {
        name: value
        for name, value in (
            ("title", title),
            ("repository", repository),
            ("branch", branch),
            ("agent", agent),
        )
        if value is not None
    }
    with workspace_transaction(_workspace_of(task_id)):
        Task.objects.filter(pk=task_id).update(updated_at=now(), version=F("version") + 1, **fields)
        task = Task.objects.get(pk=task_id)
        _record_task(task)
    return task


def task_mark_archived(*, task_id: int) -> bool:
    """Set archived_at once; False if it already was. Runs in the caller's transaction."""
    with workspace_transaction(_workspace_of(task_id)):
        updated = Task.objects.filter(pk=task_id, archived_at__isnull=True).update(
            archived_at=now(), updated_at=now(), version=F("version") + 1
        )
        if updated:
            _record_task(Task.objects.get(pk=task_id))
    return bool(updated)


ProvisionOutcome = Literal["ready", "busy", "queued", "failed", "gone"]


@dataclass(frozen=True)
class ProvisionResult:
    outcome: ProvisionOutcome
    sandbox: Sandbox | None = None
    fence: int | None = None
    code: str = ""
    message: str = ""


def task_provision_run(
    *, sandbox_id: int, owner: str, on_ready: Callable[[], object] | None = None
) -> ProvisionResult:
    """One run of a task's provisioning: take the sandbox's lease and run the provider's
    steps with the task's current repository and branch and the sandbox's agent.

    ready: the sandbox is ready (this run made it so, and `on_ready` ran in the same
    commit; or it already was). busy: a live run holds the lease (its `lease_expires_at`
    says when to look again). queued: the workspace has its share of runs going. gone:
    the sandbox or its task is no longer live. A failure is returned, not recorded: the
    caller fails the sandbox together with the tabs that waited on it, in one transaction.
    """
    if not Task.objects.filter(sandboxes=sandbox_id, archived_at__isnull=True).exists():
        # Archived (or gone): take no lease, which would hold a slot of the workspace.
        from sandboxes.models import Sandbox

        return ProvisionResult("gone", Sandbox.objects.filter(pk=sandbox_id).first())
    claim = sandbox_services.sandbox_lease(sandbox_id=sandbox_id, owner=owner)
    sandbox = claim.sandbox
    if claim.outcome in ("gone", "ready", "busy", "queued"):
        return ProvisionResult(claim.outcome, sandbox)
    assert sandbox is not None
    if claim.outcome == "exhausted":
        return ProvisionResult(
            "failed",
            sandbox,
            sandbox.fence,
            "stalled",
            f"provisioning was interrupted {sandbox.fence} times (a crashing worker?)",
        )
    task = Task.objects.filter(pk=sandbox.task_id, archived_at__isnull=True).first()
    if task is None:
        return ProvisionResult("gone", sandbox)
    # The agent is the sandbox's own, fixed when it was made: its tabs open sessions with
    # it, so a task edit during the run (or before a re-run) reaches the next sandbox only.
    spec = SandboxSpec(
        key=sandbox.key, repository=task.repository, branch=task.branch, agent=sandbox.agent
    )
    try:
        made_ready = sandbox_services.sandbox_provision(
            sandbox_id=sandbox.pk, fence=sandbox.fence, spec=spec, on_ready=on_ready
        )
    except sandbox_services.LeaseLost:
        return ProvisionResult("busy", sandbox)
    except ProviderError as exc:
        step = exc.step
        message = f"{step}: {exc.message}" if step else exc.message
        return ProvisionResult("failed", sandbox, sandbox.fence, exc.code, message)
    except Exception as exc:
        # A bug or an unexpected environment: fail visibly rather than retry forever.
        logger.exception("provisioning sandbox %s crashed", sandbox.pk)
        return ProvisionResult(
            "failed",
            sandbox,
            sandbox.fence,
            "internal_error",
            f"provisioning crashed: {type(exc).__name__}: {exc}",
        )
    return ProvisionResult("ready" if made_ready else "busy", sandbox)
