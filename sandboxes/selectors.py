"""Reads of sandboxes."""

from __future__ import annotations

from collections import defaultdict
from statistics import median
from typing import TYPE_CHECKING, Any

from django.db.models import Max, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

from sandboxes.models import LIVE_STATES, ProvisioningStep, Sandbox, SandboxState, StepOutcome

if TYPE_CHECKING:
    from collections.abc import Iterable


def sandbox_live_for_task(*, task_id: int) -> Sandbox | None:
    """The task's live (provisioning or ready) sandbox; there is at most one."""
    return Sandbox.objects.filter(task_id=task_id, state__in=LIVE_STATES).first()


def sandbox_current_for_task(*, task_id: int) -> Sandbox | None:
    """The live sandbox, else the latest attempt (so a failure stays visible)."""
    live = sandbox_live_for_task(task_id=task_id)
    if live is not None:
        return live
    return Sandbox.objects.filter(task_id=task_id).prefetch_related("steps").order_by("-id").first()


def live_sandbox_value(field: str) -> Subquery:
    """`field` of the live sandbox of the task row an outer query is on (NULL if none)."""
    live = Sandbox.objects.filter(task_id=OuterRef("pk"), state__in=LIVE_STATES)
    return Subquery(live.values(field)[:1])


def current_sandbox_value(field: str) -> Coalesce:
    """`field` of the outer task row's current sandbox (sandbox_current_for_task: live,
    else the latest attempt), in the outer query itself."""
    latest = Sandbox.objects.filter(task_id=OuterRef("pk")).order_by("-pk")
    return Coalesce(live_sandbox_value(field), Subquery(latest.values(field)[:1]))


def sandboxes_current_for_tasks(*, task_ids: Iterable[int] | QuerySet[Any]) -> dict[int, Sandbox]:
    """sandbox_current_for_task for many tasks at once, by task id, in at most four queries
    whatever their number (live ones, the latest of the rest, the rows, their steps)."""
    chosen = dict(
        Sandbox.objects.filter(task_id__in=task_ids, state__in=LIVE_STATES).values_list(
            "task_id", "pk"
        )
    )
    latest = (
        Sandbox.objects.filter(task_id__in=task_ids)
        .exclude(task_id__in=list(chosen))
        .values("task_id")
        .annotate(latest=Max("pk"))
        .values_list("task_id", "latest")
    )
    chosen.update(latest)
    rows = Sandbox.objects.filter(pk__in=list(chosen.values())).prefetch_related("steps")
    return {sandbox.task_id: sandbox for sandbox in rows}


def sandboxes_to_destroy(*, task_id: int) -> list[int]:
    """The task's sandboxes not yet destroyed nor being destroyed (an archive frees them)."""
    return list(
        Sandbox.objects.filter(task_id=task_id)
        .exclude(state__in=[SandboxState.DESTROYING, SandboxState.DESTROYED])
        .values_list("pk", flat=True)
    )


def step_estimates(
    *, task_id: int, workspace_id: int, repository: str, names: list[str], runs: int = 5
) -> dict[str, int]:
    """How long each named step is likely to take (ms): the median of its last `runs`
    successes in this task's earlier attempts, else in the workspace's tasks on the same
    repository. Never another workspace's runs: how long a tenant's clones take is theirs.
    Steps never run there have no estimate."""
    succeeded = ProvisioningStep.objects.filter(
        outcome=StepOutcome.SUCCEEDED, finished_at__isnull=False
    )
    scopes = [
        Q(sandbox__task_id=task_id),
        Q(sandbox__task__workspace_id=workspace_id, sandbox__task__repository=repository),
    ]
    found: dict[str, int] = {}
    for scope in scopes:
        missing = [name for name in names if name not in found]
        if not missing:
            break
        rows = (
            succeeded.filter(scope, name__in=missing)
            .order_by("-started_at")
            .values_list("name", "started_at", "finished_at")[: runs * len(missing) * 4]
        )
        durations: dict[str, list[float]] = defaultdict(list)
        for name, started_at, finished_at in rows:
            if finished_at is not None and len(durations[name]) < runs:
                durations[name].append((finished_at - started_at).total_seconds() * 1000)
        found.update({name: round(median(d)) for name, d in durations.items()})
    return found
