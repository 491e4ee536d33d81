"""Tasks in the admin: listed with their latest sandbox state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib import admin
from django.utils.timesince import timesince

from sandboxes.selectors import current_sandbox_value
from tasks_app.models import Task

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from django.http import HttpRequest


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

    def get_queryset(self, request: HttpRequest) -> QuerySet[Task]:
        """Each row's current sandbox (live, else the latest attempt) in the list's own
        query, not a query or two per row."""
        return (
            super()
            .get_queryset(request)
            .annotate(
                sandbox_state_now=current_sandbox_value("state"),
                sandbox_error_now=current_sandbox_value("error_code"),
            )
        )

    @admin.display(description="sandbox")
    def sandbox_state(self, task: Task) -> str:
        state = getattr(task, "sandbox_state_now", None)
        if state is None:
            return "-"
        code = getattr(task, "sandbox_error_now", "")
        return f"{state} ({code})" if code else state

    @admin.display(description="age")
    def age(self, task: Task) -> str:
        return timesince(task.created_at)
