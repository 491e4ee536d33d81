"""Tasks in the admin: listed with their latest sandbox state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.utils.timesince import timesince

from core.admin import NoRawDelete, to_the_second
from sandboxes.selectors import current_sandbox_value
from tasks_app import services
from tasks_app.models import Task

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from django.http import HttpRequest


@admin.register(Task)
class TaskAdmin(NoRawDelete, admin.ModelAdmin):
    list_display = [
        "id",
        "title",
        "workspace",
        "provider",
        "agent",
        "sandbox_state",
        "age",
        "created",
        "archived_at",
    ]
    list_filter = ["provider", "agent", "workspace", ("archived_at", admin.EmptyFieldListFilter)]
    search_fields = ["title", "repository", "branch"]
    # Repository, branch and agent change over the API, where the repository policy checks
    # them; here only the title, through the same service.
    readonly_fields = [
        "workspace",
        "repository",
        "branch",
        "provider",
        "agent",
        "created_by",
        "tabs_opened",
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

    @admin.display(description="created", ordering="created_at")
    def created(self, task: Task) -> str:
        return to_the_second(task.created_at)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tasks are created through the API (events, the member as creator)

    def save_model(self, request: HttpRequest, obj: Task, form: Any, change: bool) -> None:
        services.task_update(task_id=obj.pk, title=obj.title)
