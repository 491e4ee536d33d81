"""Reads of tasks, scoped to what a user may see (a non-member gets NotFound)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.errors import NotFound
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
    return task
