"""Reads of tabs, transcripts and the workbench snapshot; every tab read is scoped to what
a user may see (a non-member gets NotFound, never 403)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.errors import NotFound
from core.models import Workspace
from core.serializers import WorkspaceOutputSerializer
from tasks_app.selectors import task_list_for_workspace
from tasks_app.serializers import TaskOutputSerializer
from workbench.models import Message, MessageRole, MessageState, TabState, WorkbenchTab
from workbench.serializers import TabOutputSerializer

if TYPE_CHECKING:
    from uuid import UUID

    from django.contrib.auth.models import User
    from django.db.models import QuerySet


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


def message_list_for_tab(*, tab_id: UUID) -> QuerySet[Message]:
    return Message.objects.filter(tab_id=tab_id).order_by("id")


def tab_has_prompts_waiting(*, tab_id: UUID) -> bool:
    """Whether any of the tab's prompts still waits for delivery (queued, or being sent)."""
    return Message.objects.filter(
        tab_id=tab_id,
        role=MessageRole.USER,
        state__in=[MessageState.QUEUED, MessageState.SENDING],
    ).exists()
