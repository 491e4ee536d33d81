"""Tasks: a unit of coding work (a repository and a branch) that runs in a sandbox."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from core.models import Workspace


class Task(models.Model):
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="tasks")
    title = models.CharField(max_length=200)
    # A git URL or a local path; empty means an empty git repository.
    repository = models.CharField(max_length=1000, blank=True, default="")
    branch = models.CharField(max_length=255, blank=True, default="")
    provider = models.CharField(max_length=64, default="local")
    agent = models.CharField(max_length=64, default="mock")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    version = models.PositiveIntegerField(default=1)
    # How many tabs were ever opened on it (numbers the next one's default title): kept,
    # not counted, so a long history of closed tabs does not slow opening a new one.
    tabs_opened = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # task_list_for_workspace: a workspace's tasks, newest first.
            models.Index(fields=["workspace", "created_at"], name="task_workspace_created"),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None
