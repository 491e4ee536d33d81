"""Reads of tabs, transcripts and the workbench snapshot; every tab read is scoped to what
a user may see (a non-member gets NotFound, never 403)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core import logs
from core.errors import NotFound
from core.models import Workspace
from core.selectors import members_of
from core.serializers import WorkspaceOutputSerializer, member_payload
from workbench.models import (
    Message,
    MessageRole,
    MessageState,
    TabState,
    TabUserState,
    WorkbenchTab,
)
from workbench.serializers import MemberTabOutputSerializer
from workbench.workbench_pages import Position, next_path, workbench_page

if TYPE_CHECKING:
    from collections.abc import Iterable
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
    logs.bind(workspace=tab.workspace_id, task=tab.task_id, sandbox=tab.sandbox_id, tab=tab.pk)
    return tab


def with_user_state(tabs: Iterable[WorkbenchTab], user_id: int) -> list[WorkbenchTab]:
    """The tabs, each with `user_state` set to the user's own state of it (or None), in
    one query whatever their number."""
    listed = list(tabs)
    states = {
        state.tab_id: state
        for state in TabUserState.objects.filter(
            user_id=user_id, tab_id__in=[tab.pk for tab in listed]
        )
    }
    for tab in listed:
        tab.user_state = states.get(tab.pk)  # type: ignore[attr-defined]
    return listed


def member_tabs(tabs: Iterable[WorkbenchTab], user_id: int) -> list[dict[str, Any]]:
    """Tabs as the user reads them: the shared fields and their own unread and draft."""
    serializer = MemberTabOutputSerializer(with_user_state(tabs, user_id), many=True)
    return list(serializer.data)


def member_tab(tab: WorkbenchTab, user_id: int) -> dict[str, Any]:
    return member_tabs([tab], user_id)[0]


def new_member_tab(tab: WorkbenchTab) -> dict[str, Any]:
    """A tab its request just created, as its creator reads it: nobody has unread or a
    draft of it yet, so no query for them (a tab POST is the hot path)."""
    tab.user_state = None  # type: ignore[attr-defined]
    return dict(MemberTabOutputSerializer(tab).data)


def workbench_snapshot(*, workspace: Workspace, user_id: int) -> dict[str, Any]:
    """The first page of a workspace's workbench as one member sees it, with its members and
    the seq it is at least as new as; `next` is the REST path of the following page (None
    when this is all of it).

    The seq is read before the rows, so the rows may already include later changes;
    clients apply events by `version`, so replaying those changes is a no-op (a member's
    own state has no version: its events, replayed in seq order, end at its latest value).
    """
    seq = Workspace.objects.filter(pk=workspace.pk).values_list("event_seq", flat=True).get()
    page = _page(workspace.pk, user_id, None)
    members = list(members_of(workspace_id=workspace.pk))
    role = next((m.role for m in members if m.user_id == user_id), None)
    workspace.my_role = role  # type: ignore[attr-defined]
    return {
        "type": "snapshot",
        "seq": seq,
        "me": user_id,
        "workspace": WorkspaceOutputSerializer(workspace).data,
        "members": [member_payload(m) for m in members],
        **page,
    }


def workbench_page_after(*, workspace: Workspace, user_id: int, cursor: str) -> dict[str, Any]:
    """A later page of the workbench: `{"tasks", "tabs", "next"}` from a page's `next`."""
    return _page(workspace.pk, user_id, Position.decode(cursor))


def _page(workspace_id: int, user_id: int, start: Position | None) -> dict[str, Any]:
    page = workbench_page(
        workspace_id=workspace_id,
        start=start,
        serialize_tabs=lambda tabs: member_tabs(tabs, user_id),
    )
    return {"tasks": page.tasks, "tabs": page.tabs, "next": next_path(workspace_id, page.next)}


def message_list_for_tab(*, tab_id: UUID) -> QuerySet[Message]:
    return Message.objects.filter(tab_id=tab_id).order_by("id")


def tab_has_prompts_waiting(*, tab_id: UUID) -> bool:
    """Whether any of the tab's prompts still waits for delivery (queued, or being sent)."""
    return Message.objects.filter(
        tab_id=tab_id,
        role=MessageRole.USER,
        state__in=[MessageState.QUEUED, MessageState.SENDING],
    ).exists()
