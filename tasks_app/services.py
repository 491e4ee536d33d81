"""Writes to tasks, and the task's provisioning workflow (claim, then run the steps)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from django.db.models import F
from django.utils.timezone import now

from sandboxes import services as sandbox_services
from sandboxes.providers.base import ProviderError, SandboxSpec
from tasks_app.models import Task
from tasks_app.serializers import TaskOutputSerializer
from workbench.events import record_event, workspace_transaction

if TYPE_CHECKING:
    from collections.abc import Callable

    from django.contrib.auth.models import AbstractBaseUser

    from sandboxes.models import Sandbox

logger = logging.getLogger(__name__)


def _record_task(task: Task) -> None:
    record_event(task.workspace_id, "task.updated", TaskOutputSerializer(task).data)


def task_create(
    *,
    workspace_id: int,
    user: AbstractBaseUser | None,
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


def task_update(*, task_id: int, title: str) -> Task:
    with workspace_transaction(_workspace_of(task_id)):
        Task.objects.filter(pk=task_id).update(
            title=title, updated_at=now(), version=F("version") + 1
        )
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


ProvisionOutcome = Literal["ready", "busy", "failed", "gone", "unneeded"]


@dataclass(frozen=True)
class ProvisionResult:
    outcome: ProvisionOutcome
    sandbox: Sandbox | None = None
    fence: int | None = None
    code: str = ""
    message: str = ""


def task_provision(
    *, task_id: int, owner: str, needed: Callable[[], bool] | None = None
) -> ProvisionResult:
    """Make sure the task's sandbox is ready, running the provider's steps if this caller
    wins the lease. One run per task however many tabs ask; the others get `busy`.

    A failure is returned, not recorded: the caller fails the sandbox together with the
    tabs that waited on it, in one transaction. `owner` names the run in the lease (for
    operators); it grants nothing: a lease is taken only once it has expired.
    """
    task = Task.objects.filter(pk=task_id, archived_at__isnull=True).first()
    if task is None:
        return ProvisionResult("gone")
    claim = sandbox_services.sandbox_claim(
        workspace_id=task.workspace_id,
        task_id=task.pk,
        provider=task.provider,
        agent=task.agent,
        owner=owner,
        needed=needed,
    )
    if claim.outcome == "unneeded":
        return ProvisionResult("unneeded")
    if claim.outcome == "exhausted" and claim.sandbox is not None:
        return ProvisionResult(
            "failed",
            claim.sandbox,
            claim.sandbox.fence,
            "stalled",
            f"provisioning was interrupted {claim.sandbox.fence} times (a crashing worker?)",
        )
    if claim.outcome != "lead" or claim.sandbox is None:
        return ProvisionResult("busy" if claim.outcome == "busy" else "ready", claim.sandbox)
    sandbox = claim.sandbox
    spec = SandboxSpec(
        key=sandbox.key, repository=task.repository, branch=task.branch, agent=task.agent
    )
    try:
        made_ready = sandbox_services.sandbox_provision(
            sandbox_id=sandbox.pk, fence=sandbox.fence, spec=spec
        )
    except sandbox_services.LeaseLost:
        return ProvisionResult("busy", sandbox)
    except ProviderError as exc:
        step = getattr(exc, "step", "")
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
