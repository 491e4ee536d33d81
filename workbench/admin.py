"""Operators' views: state, age and error at a glance; state changes only through services."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.db.models import OuterRef, Subquery
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.timesince import timesince

from core.admin import NoRawDelete, to_the_second
from core.errors import DomainError
from sandboxes import admin as sandbox_admin
from sandboxes.models import LIVE_STATES, ProvisioningStep, Sandbox
from sandboxes.selectors import sandbox_current_for_task
from tasks_app import admin as task_admin
from tasks_app.models import Task
from workbench import services
from workbench.models import TabState, TabUserState, WorkbenchTab

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from django.http import HttpRequest

logger = logging.getLogger(__name__)


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
class WorkbenchTabAdmin(NoRawDelete, admin.ModelAdmin):
    list_display = [
        "id",
        "title",
        "task",
        "state",
        "step_now",
        "age",
        "error_code",
        "attempt",
        "redrives",
        "model",
        "created",
        "changed",
    ]
    list_filter = ["state", "error_code", "agent", "workspace"]
    search_fields = ["id", "title", "task__title", "error_message", "session_id"]
    list_select_related = ["task"]
    date_hierarchy = "created_at"
    actions = ["retry_tabs", "close_tabs"]
    # The workflow owns these: editing them by hand would bypass the state machine.
    readonly_fields = [
        "provisioning",
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
        "running_since",
    ]
    fields = ["title", "model", *readonly_fields]
    inlines = [TabUserStateInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[WorkbenchTab]:
        """Each row's current provisioning step (its task's live sandbox's latest), in the
        list's own query."""
        latest = ProvisioningStep.objects.filter(
            sandbox__task_id=OuterRef("task_id"), sandbox__state__in=LIVE_STATES
        ).order_by("-started_at", "-pk")
        return (
            super()
            .get_queryset(request)
            .annotate(
                step_name=Subquery(latest.values("name")[:1]),
                step_outcome=Subquery(latest.values("outcome")[:1]),
            )
        )

    @admin.display(description="current step")
    def step_now(self, tab: WorkbenchTab) -> str:
        name = getattr(tab, "step_name", None)
        return f"{name} ({getattr(tab, 'step_outcome', '')})" if name else "-"

    @admin.display(description="in state for")
    def age(self, tab: WorkbenchTab) -> str:
        return timesince(tab.state_changed_at)

    @admin.display(description="created", ordering="created_at")
    def created(self, tab: WorkbenchTab) -> str:
        return to_the_second(tab.created_at)

    @admin.display(description="state changed", ordering="state_changed_at")
    def changed(self, tab: WorkbenchTab) -> str:
        return to_the_second(tab.state_changed_at)

    @admin.display(description="provisioning")
    def provisioning(self, tab: WorkbenchTab) -> str:
        """The sandbox the tab runs in, else its task's current attempt (a failed tab's
        cause), linked, with its steps."""
        sandbox = tab.sandbox or sandbox_current_for_task(task_id=tab.task_id)
        if sandbox is None:
            return "no sandbox yet"
        link = format_html(
            '<a href="{}">sandbox {} ({}{})</a>',
            reverse("admin:sandboxes_sandbox_change", args=[sandbox.pk]),
            sandbox.key,
            sandbox.state,
            f", {sandbox.error_code}" if sandbox.error_code else "",
        )
        steps = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    step.name,
                    step.outcome,
                    to_the_second(step.started_at),
                    "" if step.duration_ms is None else f"{step.duration_ms} ms",
                    step.detail,
                )
                for step in sandbox.steps.all()
            ),
        )
        return format_html("{}<table>{}</table>", link, steps)

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


def _each(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    ids: list[int],
    action: Any,
    done: str,
) -> None:
    """Run a service per selected row; a refusal is shown, the others still run. Who did
    it goes to the operators' log."""
    logger.info("admin %s by %s on %s", done.split(" ", 1)[0].lower(), request.user, ids)
    count = 0
    for pk in ids:
        try:
            if action(pk) is not False:
                count += 1
        except DomainError as exc:
            modeladmin.message_user(request, f"{pk}: {exc.message}", messages.WARNING)
    modeladmin.message_user(request, done.format(count=count))


admin.site.unregister(Task)


@admin.register(Task)
class TaskAdmin(task_admin.TaskAdmin):
    """The tasks' list with the actions that need the workbench's services."""

    actions = ["archive_tasks", "reprovision_tasks"]

    @admin.action(description="Archive selected tasks (close their tabs, destroy sandboxes)")
    def archive_tasks(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        ids = list(queryset.filter(archived_at__isnull=True).values_list("pk", flat=True))
        _each(self, request, ids, lambda pk: services.task_archive(task_id=pk), "Archived {count}.")

    @admin.action(description="Re-provision selected tasks (a fresh sandbox; retry failed tabs)")
    def reprovision_tasks(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        reason = "re-provisioned by an operator"  # tenants read it: never the operator's name
        ids = list(queryset.filter(archived_at__isnull=True).values_list("pk", flat=True))
        _each(
            self,
            request,
            ids,
            lambda pk: services.task_reprovision(task_id=pk, reason=reason),
            "Re-provisioned {count} task(s).",
        )


admin.site.unregister(Sandbox)


@admin.register(Sandbox)
class SandboxAdmin(sandbox_admin.SandboxAdmin):
    """Sandboxes with the action that needs the workbench's services."""

    actions = ["discard_sandboxes"]

    @admin.action(description="Destroy selected sandboxes (their tabs fail and can be retried)")
    def discard_sandboxes(self, request: HttpRequest, queryset: QuerySet[Sandbox]) -> None:
        reason = "destroyed by an operator"  # tenants read it: never the operator's name
        _each(
            self,
            request,
            list(queryset.filter(state__in=LIVE_STATES).values_list("pk", flat=True)),
            lambda pk: services.sandbox_discard(sandbox_id=pk, reason=reason),
            "Destroyed {count} sandbox(es).",
        )
