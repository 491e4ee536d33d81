"""The workbench in pages: the snapshot is the first page, `GET .../workbench/?cursor=` the rest.

A workbench reads as one sequence: tasks newest first, each followed by its open tabs oldest
first. A page is as much of it as fits WORKBENCH_PAGE_BYTES of JSON, at most
WORKBENCH_PAGE_TASKS tasks and WORKBENCH_PAGE_TABS tabs, so a frame stays far under Daphne's
1 MiB whatever the workspace holds (a 10,000-task snapshot was 17 MB and closed every socket
with 1011), and a page costs a constant number of indexed range reads, not one per task.

Why a keyset of our own rather than DRF's CursorPagination (which the REST lists use): a page
ends where its bytes run out, possibly inside a task's tabs, and the next page must resume
there; DRF's cursors are positions in one queryset cut into pages of a fixed row count.

Pages are read at different moments; what changes between them reaches the client as events
(applied by `version`), so a task that moves, appears or goes away is never lost.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode
from uuid import UUID

from django.conf import settings
from django.db.models import Count, Q

from core.errors import InvalidInput
from tasks_app.models import Task
from tasks_app.serializers import TaskOutputSerializer
from workbench.models import TabState, WorkbenchTab

if TYPE_CHECKING:
    from collections.abc import Callable

    from django.db.models import QuerySet


@dataclass(frozen=True)
class Position:
    """Where a page starts: at this task (sent again, so a page stands alone), after
    `after_tab` among its tabs when the last page ended inside them."""

    task_created: datetime
    task_id: int
    after_tab: tuple[datetime, UUID] | None = None

    def encode(self) -> str:
        raw: dict[str, Any] = {"c": self.task_created.isoformat(), "t": self.task_id}
        if self.after_tab is not None:
            raw["bc"], raw["b"] = self.after_tab[0].isoformat(), self.after_tab[1].hex
        return base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> Position:
        try:
            padded = cursor + "=" * (-len(cursor) % 4)
            raw = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
            task_id = raw["t"]
            if not isinstance(task_id, int) or isinstance(task_id, bool):
                raise TypeError(task_id)
            after = None
            if "b" in raw:
                after = (datetime.fromisoformat(raw["bc"]), UUID(hex=raw["b"]))
            return cls(datetime.fromisoformat(raw["c"]), task_id, after)
        except (
            UnicodeError,
            binascii.Error,
            ValueError,
            TypeError,
            KeyError,
            AttributeError,
        ) as exc:
            raise InvalidInput(
                "The cursor is not one this workbench gave out; follow `next`.",
                code="invalid_cursor",
            ) from exc


@dataclass
class Page:
    tasks: list[dict[str, Any]]
    tabs: list[dict[str, Any]]
    next: Position | None


def _size(item: dict[str, Any]) -> int:
    # What it adds to the frame: Daphne counts UTF-8 bytes (the frame is not ASCII-escaped).
    return len(json.dumps(item, ensure_ascii=False).encode()) + 1


def _tasks_from(workspace_id: int, start: Position | None, limit: int) -> list[Task]:
    tasks = Task.objects.filter(workspace_id=workspace_id, archived_at__isnull=True)
    if start is not None:
        tasks = tasks.filter(
            Q(created_at__lt=start.task_created)
            | Q(created_at=start.task_created, id__lte=start.task_id)
        )
    return list(tasks.order_by("-created_at", "-id")[:limit])


def _open_tabs(task_ids: list[int], start: Position | None) -> QuerySet[WorkbenchTab]:
    tabs = WorkbenchTab.objects.filter(task_id__in=task_ids).exclude(state=TabState.CLOSED)
    if start is not None and start.after_tab is not None:
        created, tab_id = start.after_tab
        tabs = tabs.exclude(
            Q(task_id=start.task_id)
            & (Q(created_at__lt=created) | Q(created_at=created, id__lte=tab_id))
        )
    return tabs


def workbench_page(
    *,
    workspace_id: int,
    start: Position | None,
    serialize_tabs: Callable[[list[WorkbenchTab]], list[dict[str, Any]]],
) -> Page:
    """One page of the workspace's workbench from `start` (None: the first page).
    `serialize_tabs` renders tabs as the reading member sees them."""
    max_tasks = max(1, settings.WORKBENCH_PAGE_TASKS)
    max_tabs = max(1, settings.WORKBENCH_PAGE_TABS)
    budget = settings.WORKBENCH_PAGE_BYTES
    tasks = _tasks_from(workspace_id, start, max_tasks + 1)
    counts = dict(
        _open_tabs([t.pk for t in tasks[:max_tasks]], start)
        .values_list("task_id")
        .annotate(n=Count("id"))
        .values_list("task_id", "n")
    )
    # The tasks whose tabs fit the tab limit (the first one whatever its count).
    chosen: list[Task] = []
    tab_total = 0
    for task in tasks[:max_tasks]:
        if chosen and tab_total + counts.get(task.pk, 0) > max_tabs:
            break
        chosen.append(task)
        tab_total += counts.get(task.pk, 0)
    rows = list(
        _open_tabs([t.pk for t in chosen], start).order_by("task_id", "created_at", "id")[
            : max_tabs + 1
        ]
    )
    by_task: dict[int, list[WorkbenchTab]] = {}
    for tab in rows:
        by_task.setdefault(tab.task_id, []).append(tab)
    task_data = {t["id"]: t for t in TaskOutputSerializer(chosen, many=True).data}
    tab_data = {t["id"]: t for t in serialize_tabs(rows)}

    page = Page(tasks=[], tabs=[], next=None)
    used = 0
    for task in chosen:
        used += _size(task_data[task.pk])
        if page.tasks and used > budget:
            page.next = Position(task.created_at, task.pk)
            return page
        page.tasks.append(task_data[task.pk])
        last: tuple[datetime, UUID] | None = None
        for tab in by_task.get(task.pk, []):
            item = tab_data[str(tab.pk)]
            used += _size(item)
            # Always a task and one tab at least, so every page moves on; so `last` is
            # None only for a task none of whose tabs made it here (the next page
            # starts with it and all its tabs).
            over = len(page.tabs) + len(page.tasks) > 1 and used > budget
            if over or len(page.tabs) >= max_tabs:
                page.next = Position(task.created_at, task.pk, last)
                return page
            page.tabs.append(item)
            last = (tab.created_at, tab.pk)
    following = tasks[len(chosen)] if len(tasks) > len(chosen) else None
    if following is not None:
        page.next = Position(following.created_at, following.pk)
    return page


def next_path(workspace_id: int, position: Position | None) -> str | None:
    """The REST path of the page at `position`, as `next` in a page and its `Link` header."""
    if position is None:
        return None
    query = urlencode({"cursor": position.encode()})
    return f"/api/workspaces/{workspace_id}/workbench/?{query}"
