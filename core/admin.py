"""Operators' views of workspaces, their members and their event log (read-only)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.utils.timezone import localtime

from core import services
from core.errors import DomainError
from core.models import Event, Membership, Workspace

if TYPE_CHECKING:
    from datetime import datetime

    from django.http import HttpRequest

# The admin's classes are generic only in the stubs (subscripting them fails at run time
# without django-stubs-ext's patch), hence the ignores under --strict.


def to_the_second(at: datetime | None) -> str:
    """A time as operators compare it with logs: date and time to the second."""
    return localtime(at).strftime("%Y-%m-%d %H:%M:%S") if at is not None else "-"


class NoRawDelete:
    """Rows the workflow owns are never deleted by hand: a cascade would drop live sandboxes'
    rows (leaking their processes), tabs mid-flight and the event log's seq; the admin's
    actions go through the services instead."""

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class MembershipForm(forms.ModelForm):  # type: ignore[type-arg]
    """A saved row's user is fixed: the services change a role or remove a member, never
    swap who the membership is for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["user"].disabled = True


class MembershipInline(admin.TabularInline):  # type: ignore[type-arg]
    model = Membership
    form = MembershipForm
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Workspace)
class WorkspaceAdmin(NoRawDelete, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["id", "name", "event_seq", "created_at"]
    search_fields = ["name"]
    readonly_fields = ["event_seq", "created_at"]
    inlines = [MembershipInline]

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        """Members change through the services, as over the API: each change is an event,
        a removed member's sockets close, and the last owner stays."""
        if formset.model is not Membership:
            super().save_formset(request, form, formset, change)
            return
        workspace = form.instance
        # What formset.save() would have set, for the admin's change message.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for inline in formset.forms:
            if not inline.has_changed() and not formset._should_delete_form(inline):
                continue
            member: Membership = inline.instance
            try:
                if formset._should_delete_form(inline) and member.pk:
                    services.member_remove(
                        workspace_id=workspace.pk, by=None, user_id=member.user_id
                    )
                elif member.pk:
                    services.member_update(
                        workspace_id=workspace.pk, by=None, user_id=member.user_id, role=member.role
                    )
                elif inline.cleaned_data.get("user") is not None:
                    services.membership_add(
                        workspace_id=workspace.pk,
                        user=inline.cleaned_data["user"],
                        role=member.role,
                    )
            except DomainError as exc:
                self.message_user(request, f"{member.user}: {exc.message}", messages.ERROR)


@admin.register(Event)
class EventAdmin(NoRawDelete, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["workspace", "seq", "name", "created_at"]
    list_filter = ["name", "workspace"]
    fields = ("workspace", "seq", "name", "shown_data", "audience", "created_at")
    readonly_fields = fields

    @admin.display(description="data")
    def shown_data(self, event: Event) -> object:
        # A member's own state (their draft) is theirs: operators see that it changed.
        return "(private to its audience)" if event.audience is not None else event.data

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
