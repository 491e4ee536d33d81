"""Sandboxes and their recorded steps, read-only: the workflow owns their state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.utils.timesince import timesince

from core.admin import NoRawDelete, to_the_second
from sandboxes.models import ProvisioningStep, Sandbox

if TYPE_CHECKING:
    from django.http import HttpRequest


class StepInline(admin.TabularInline):
    model = ProvisioningStep
    extra = 0
    can_delete = False
    fields = readonly_fields = (
        "name",
        "outcome",
        "started",
        "finished",
        "duration_ms",
        "detail",
        "log",
    )

    @admin.display(description="started")
    def started(self, step: ProvisioningStep) -> str:
        return to_the_second(step.started_at)

    @admin.display(description="finished")
    def finished(self, step: ProvisioningStep) -> str:
        return to_the_second(step.finished_at)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Sandbox)
class SandboxAdmin(NoRawDelete, admin.ModelAdmin):
    list_display = [
        "id",
        "key",
        "task",
        "provider",
        "state",
        "age",
        "error_code",
        "fence",
        "created",
    ]
    list_filter = ["state", "provider", "error_code"]
    search_fields = ["key", "task__title", "error_message"]
    # Never the token: it lets anyone drive the sandbox.
    exclude = ["token"]
    readonly_fields = [
        "task",
        "provider",
        "agent",
        "key",
        "state",
        "error_code",
        "error_message",
        "base_url",
        "workdir",
        "pid",
        "lease_owner",
        "lease_expires_at",
        "fence",
        "version",
        "created_at",
        "updated_at",
        "ready_at",
        "destroyed_at",
    ]
    inlines = [StepInline]

    @admin.display(description="age")
    def age(self, sandbox: Sandbox) -> str:
        return timesince(sandbox.created_at)

    @admin.display(description="created", ordering="created_at")
    def created(self, sandbox: Sandbox) -> str:
        return to_the_second(sandbox.created_at)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
