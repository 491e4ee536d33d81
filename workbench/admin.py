"""Operators' views: state, age and error at a glance; state changes only through services."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.utils.timesince import timesince

from core.errors import DomainError
from workbench import services
from workbench.models import TabState, TabUserState, WorkbenchTab

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from django.http import HttpRequest


class TabUserStateInline(admin.TabularInline):
    """Who has the tab unread. Drafts are the members' own and are not shown."""

    model = TabUserState
    extra = 0
    fields = ("user", "unread", "updated_at")
    readonly_fields = ("user", "unread", "updated_at")
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(WorkbenchTab)
class WorkbenchTabAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "title",
        "task",
        "state",
        "age",
        "error_code",
        "attempt",
        "redrives",
        "model",
        "created_at",
    ]
    list_filter = ["state", "error_code", "agent", "workspace"]
    search_fields = ["id", "title", "task__title", "error_message", "session_id"]
    list_select_related = ["task"]
    date_hierarchy = "created_at"
    actions = ["retry_tabs", "close_tabs"]
    # The workflow owns these: editing them by hand would bypass the state machine.
    readonly_fields = [
        "id",
        "workspace",
        "task",
        "sandbox",
        "created_by",
        "agent",
        "state",
        "error_code",
        "error_message",
        "session_id",
        "acp_server_id",
        "attempt",
        "redrives",
        "idempotency_key",
        "version",
        "created_at",
        "updated_at",
        "state_changed_at",
        "ready_at",
        "closed_at",
    ]
    fields = ["title", "model", *readonly_fields]
    inlines = [TabUserStateInline]

    @admin.display(description="in state for")
    def age(self, tab: WorkbenchTab) -> str:
        return timesince(tab.state_changed_at)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tabs are opened through the API, which dispatches their work

    def save_model(self, request: HttpRequest, obj: WorkbenchTab, form: Any, change: bool) -> None:
        services.tab_update(tab_id=obj.pk, user=request.user, title=obj.title)  # type: ignore[arg-type]
        if "model" in form.changed_data:
            services.tab_set_model(tab_id=obj.pk, model=obj.model)

    @admin.action(description="Retry selected tabs in error")
    def retry_tabs(self, request: HttpRequest, queryset: QuerySet[WorkbenchTab]) -> None:
        done = 0
        for tab in queryset.filter(state=TabState.ERROR):
            try:
                services.tab_retry(tab_id=tab.pk)
                done += 1
            except DomainError as exc:
                self.message_user(request, f"{tab.pk}: {exc.message}", messages.WARNING)
        self.message_user(request, f"Retried {done} tab(s).")

    @admin.action(description="Close selected tabs")
    def close_tabs(self, request: HttpRequest, queryset: QuerySet[WorkbenchTab]) -> None:
        for tab in queryset.exclude(state=TabState.CLOSED):
            services.tab_close(tab_id=tab.pk)
        self.message_user(request, "Closed the selected tabs.")
