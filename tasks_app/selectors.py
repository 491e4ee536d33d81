"""Reads of tasks, scoped to what a user may see (a non-member gets NotFound)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings

from core import logs
from core.errors import NotFound
from sandboxes.models import Sandbox
from tasks_app.models import Task

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django.db.models import QuerySet


def task_list_for_workspace(*, workspace_id: int, include_archived: bool = False) -> QuerySet[Task]:
    tasks = Task.objects.filter(workspace_id=workspace_id)
    if not include_archived:
        tasks = tasks.filter(archived_at__isnull=True)
    return tasks.order_by("-created_at")


def task_get_for_user(*, task_id: int, user: User) -> Task:
    task = Task.objects.filter(pk=task_id, workspace__memberships__user=user).first()
    if task is None:
        raise NotFound("No such task.", code="task_not_found")
    logs.bind(workspace=task.workspace_id, task=task.pk)
    return task


def agent_list_for_user(*, user: User) -> list[dict[str, object]]:
    """The agents a task may run here (WORKBENCH_AGENTS), each with the models its
    sandbox-agent server last reported in one of the user's own workspaces: empty until a
    sandbox of theirs with that agent became ready (a task's own sandbox says the same)."""
    own = Sandbox.objects.filter(
        task__workspace__memberships__user=user, ready_at__isnull=False
    ).order_by("-ready_at")
    agents: list[dict[str, object]] = []
    for name in settings.WORKBENCH_AGENTS:
        known = own.filter(agent=name).values_list("agent_models", "default_model").first()
        models, default = known if known is not None else ([], "")
        agents.append(
            {
                "name": name,
                "models": [{"value": value, "name": label} for value, label in models],
                "default_model": default,
            }
        )
    return agents
