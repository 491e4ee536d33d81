"""Operators' views of workspaces, their members and their event log (read-only)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin

from core.models import Event, Membership, Workspace

if TYPE_CHECKING:
    from django.http import HttpRequest

# The admin's classes are generic only in the stubs (subscripting them fails at run time
# without django-stubs-ext's patch), hence the ignores under --strict.


class MembershipInline(admin.TabularInline):  # type: ignore[type-arg]
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["id", "name", "event_seq", "created_at"]
    search_fields = ["name"]
    readonly_fields = ["event_seq", "created_at"]
    inlines = [MembershipInline]


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["workspace", "seq", "name", "created_at"]
    list_filter = ["name", "workspace"]
    readonly_fields = ["workspace", "seq", "name", "data", "created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
