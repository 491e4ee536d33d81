"""Tasks in the admin: listed with their latest sandbox state."""

from __future__ import annotations

from django.contrib import admin
from django.utils.timesince import timesince

from sandboxes.selectors import sandbox_current_for_task
from tasks_app.models import Task


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "title",
        "workspace",
        "provider",
        "agent",
        "sandbox_state",
        "age",
        "archived_at",
    ]
    list_filter = ["provider", "agent", "workspace", ("archived_at", admin.EmptyFieldListFilter)]
    search_fields = ["title", "repository", "branch"]
    readonly_fields = [
        "workspace",
        "created_by",
        "version",
        "created_at",
        "updated_at",
        "archived_at",
    ]

    @admin.display(description="sandbox")
    def sandbox_state(self, task: Task) -> str:
        sandbox = sandbox_current_for_task(task_id=task.pk)
        if sandbox is None:
            return "-"
        return f"{sandbox.state} ({sandbox.error_code})" if sandbox.error_code else sandbox.state

    @admin.display(description="age")
    def age(self, task: Task) -> str:
        return timesince(task.created_at)
