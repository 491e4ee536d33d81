"""Reads, always scoped to what a user may see (a non-member gets NotFound, never 403)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import OuterRef, QuerySet, Subquery

from core.errors import NotFound
from core.models import Event, Membership, Workspace
from tasks_app.models import Task
from tasks_app.serializers import TaskOutputSerializer
from workbench.models import Message, MessageRole, MessageState, TabState, WorkbenchTab
from workbench.serializers import TabOutputSerializer, WorkspaceOutputSerializer

if TYPE_CHECKING:
    from uuid import UUID

    from django.contrib.auth.models import User


def workspace_list_for_user(*, user: User) -> QuerySet[Workspace]:
    role = Membership.objects.filter(workspace=OuterRef("pk"), user=user).values("role")[:1]
    return (
        Workspace.objects.filter(memberships__user=user)
        .annotate(my_role=Subquery(role))
        .order_by("id")
    )


def workspace_is_member(*, workspace_id: int, user: User) -> bool:
    if not user.is_authenticated:
        return False
    return Membership.objects.filter(workspace_id=workspace_id, user=user).exists()


def workspace_get_for_user(*, workspace_id: int, user: User) -> Workspace:
    workspace = workspace_list_for_user(user=user).filter(pk=workspace_id).first()
    if workspace is None:
        raise NotFound("No such workspace.", code="workspace_not_found")
    return workspace


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


def tab_list_for_task(*, task_id: int, include_closed: bool = False) -> QuerySet[WorkbenchTab]:
    tabs = WorkbenchTab.objects.filter(task_id=task_id)
    if not include_closed:
        tabs = tabs.exclude(state=TabState.CLOSED)
    return tabs.order_by("created_at")


def tab_get_for_user(*, tab_id: UUID, user: User) -> WorkbenchTab:
    tab = WorkbenchTab.objects.filter(pk=tab_id, workspace__memberships__user=user).first()
    if tab is None:
        raise NotFound("No such tab.", code="tab_not_found")
    return tab


def workbench_snapshot(*, workspace: Workspace) -> dict[str, Any]:
    """The whole workbench of a workspace and the seq it is at least as new as.

    The seq is read before the rows, so the rows may already include later changes;
    clients apply events by `version`, so replaying those changes is a no-op.
    """
    seq = Workspace.objects.filter(pk=workspace.pk).values_list("event_seq", flat=True).get()
    tasks = task_list_for_workspace(workspace_id=workspace.pk)
    tabs = (
        WorkbenchTab.objects.filter(workspace_id=workspace.pk, task__archived_at__isnull=True)
        .exclude(state=TabState.CLOSED)
        .order_by("created_at")
    )
    return {
        "type": "snapshot",
        "seq": seq,
        "workspace": WorkspaceOutputSerializer(workspace).data,
        "tasks": TaskOutputSerializer(tasks, many=True).data,
        "tabs": TabOutputSerializer(tabs, many=True).data,
    }


def events_after(*, workspace_id: int, seq: int, limit: int = 1000) -> list[Event] | None:
    """Events after `seq`, in order; None if some were pruned (the client needs a snapshot)."""
    events = list(
        Event.objects.filter(workspace_id=workspace_id, seq__gt=seq).order_by("seq")[: limit + 1]
    )
    if len(events) > limit:
        return None
    expected_first = seq + 1
    if events and events[0].seq != expected_first:
        return None
    if not events:
        current = Workspace.objects.filter(pk=workspace_id).values_list("event_seq", flat=True)
        if current and current[0] > seq:
            return None
    return events


def message_list_for_tab(*, tab_id: UUID) -> QuerySet[Message]:
    return Message.objects.filter(tab_id=tab_id).order_by("id")


def tab_has_prompts_waiting(*, tab_id: UUID) -> bool:
    """Whether any of the tab's prompts still waits for delivery (queued, or being sent)."""
    return Message.objects.filter(
        tab_id=tab_id,
        role=MessageRole.USER,
        state__in=[MessageState.QUEUED, MessageState.SENDING],
    ).exists()
