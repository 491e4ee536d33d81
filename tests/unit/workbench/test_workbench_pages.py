"""The workbench in pages: the snapshot is the first, each page's `next` leads to the one
after it, and walking them all shows every live task and open tab once, in order, while no
page grows past its limits whatever the workspace holds."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core.models import Event
from core.selectors import events_after
from tasks_app.models import Task
from tests.factories import TabFactory, TaskFactory
from workbench import selectors
from workbench.models import TabState, TabUserState, WorkbenchTab

pytestmark = pytest.mark.django_db


def spread(tasks: list[Task]) -> None:
    """Distinct creation times, oldest first (factories create them within microseconds)."""
    base = timezone.now() - timedelta(days=1)
    for n, task in enumerate(tasks):
        Task.objects.filter(pk=task.pk).update(created_at=base + timedelta(seconds=n))


def walk(client, workspace_id: int) -> tuple[dict, list[dict]]:
    first = client.get(f"/api/workspaces/{workspace_id}/workbench/")
    assert first.status_code == 200
    pages, body = [first.json()], first.json()
    while body["next"]:
        answer = client.get(body["next"])
        assert answer.status_code == 200, answer.content[:300]
        assert ('rel="next"' in answer.get("Link", "")) == bool(answer.json()["next"])
        body = answer.json()
        pages.append(body)
        assert len(pages) < 200, "the pages never end"
    return pages[0], pages


@pytest.fixture
def small_pages(settings):
    settings.WORKBENCH_PAGE_TASKS = 3
    settings.WORKBENCH_PAGE_TABS = 4
    settings.WORKBENCH_PAGE_BYTES = 512 * 1024
    return settings


def test_walking_the_pages_shows_every_task_and_open_tab_once_in_order(
    small_pages, client_for, workspace, alice
):
    tasks = TaskFactory.create_batch(8, workspace=workspace)
    spread(tasks)
    tabs = {}
    for n, task in enumerate(tasks):
        for _ in range(n % 4 + (6 if n == 5 else 0)):  # one task has more than a page
            tab = TabFactory(task=task)
            tabs[str(tab.pk)] = task.pk
        TabFactory(task=task, state=TabState.CLOSED)  # never shown
    archived = TaskFactory(workspace=workspace, archived_at=timezone.now())
    TabFactory(task=archived)

    snapshot, pages = walk(client_for(alice), workspace.pk)
    assert snapshot["type"] == "snapshot" and len(pages) > 3
    seen_tabs = [tab["id"] for page in pages for tab in page["tabs"]]
    assert sorted(seen_tabs) == sorted(tabs) and len(set(seen_tabs)) == len(seen_tabs)
    first_seen = list(dict.fromkeys(t["id"] for page in pages for t in page["tasks"]))
    assert first_seen == [task.pk for task in reversed(tasks)]  # newest first, none missing
    for page in pages:
        assert len(page["tasks"]) <= 3 and len(page["tabs"]) <= 4
        on_page = {task["id"] for task in page["tasks"]}
        assert all(tab["task"] in on_page for tab in page["tabs"])  # each tab with its task


def test_pages_stay_within_their_bytes_even_with_big_drafts(settings, client_for, workspace, alice):
    settings.WORKBENCH_PAGE_BYTES = 256 * 1024
    task = TaskFactory(workspace=workspace)
    tabs = TabFactory.create_batch(12, task=task)
    for tab in tabs:  # 80,000 characters of 3 UTF-8 bytes each: 240 KB a tab
        TabUserState.objects.create(tab=tab, user=alice, draft="\u20ac" * 80_000)

    _, pages = walk(client_for(alice), workspace.pk)
    assert sum(len(page["tabs"]) for page in pages) == 12
    for page in pages:
        size = len(json.dumps(page, ensure_ascii=False).encode())
        # At most the budget plus the one item every page takes to move on; under 1 MiB.
        assert size < 256 * 1024 + 250_000 < 2**20
        assert all(tab["draft"] == "\u20ac" * 80_000 for tab in page["tabs"])


def test_a_snapshot_costs_the_same_queries_at_5_and_at_300_tasks(workspace, alice):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            selectors.workbench_snapshot(workspace=workspace, user_id=alice.pk)
        return len(captured)

    for task in TaskFactory.create_batch(5, workspace=workspace):
        TabFactory(task=task)
    few = queries()
    more = TaskFactory.create_batch(295, workspace=workspace)
    WorkbenchTab.objects.bulk_create(
        [TabFactory.build(task=task, workspace=workspace) for task in more]
    )
    assert queries() == few


def test_a_tampered_cursor_is_a_400_and_another_workspace_stays_out_of_reach(
    small_pages, client_for, workspace, alice, bob
):
    from tests.factories import WorkspaceFactory

    TaskFactory.create_batch(5, workspace=workspace)
    theirs = WorkspaceFactory(name="Theirs")
    TaskFactory.create_batch(5, workspace=theirs)
    client = client_for(alice)
    for cursor in ["x", "e30", "eyJ0IjogInN0ciIsICJjIjogIjIwMjYifQ", "%00"]:
        answer = client.get(f"/api/workspaces/{workspace.pk}/workbench/?cursor={cursor}")
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == "invalid_cursor"
    # A cursor of mine used on their workbench: still 404 (not a member), nothing read.
    nxt = client.get(f"/api/workspaces/{workspace.pk}/workbench/").json()["next"]
    answer = client.get(nxt.replace(f"/workspaces/{workspace.pk}/", f"/workspaces/{theirs.pk}/"))
    assert answer.status_code == 404


def test_a_resume_far_behind_reads_no_event_rows(workspace):
    Event.objects.bulk_create(
        [Event(workspace=workspace, seq=n, name="task.updated", data={}) for n in range(1, 1_502)]
    )
    type(workspace).objects.filter(pk=workspace.pk).update(event_seq=1_501)
    with CaptureQueriesContext(connection) as captured:
        assert events_after(workspace_id=workspace.pk, seq=100) is None
    assert len(captured) == 1  # the counter alone
    assert [e.seq for e in events_after(workspace_id=workspace.pk, seq=1_499) or []] == [
        1_500,
        1_501,
    ]
    Event.objects.filter(workspace=workspace, seq=1_000).delete()  # pruned
    assert events_after(workspace_id=workspace.pk, seq=990) is None


def paged_workspace(workspace, user) -> tuple[dict, list[tuple[str, dict]], set[int], set[str]]:
    """A workbench of several pages: its snapshot, each later (path, page), and the ids of
    every live task and open tab (what a client holds once it loaded them all)."""
    from urllib.parse import parse_qs, urlparse

    tasks = TaskFactory.create_batch(7, workspace=workspace)
    spread(tasks)
    tab_ids = {str(TabFactory(task=task).pk) for task in tasks for _ in range(2)}
    snapshot = selectors.workbench_snapshot(workspace=workspace, user_id=user.pk)
    pages, path = [], snapshot["next"]
    while path:
        cursor = parse_qs(urlparse(path).query)["cursor"][0]
        page = selectors.workbench_page_after(workspace=workspace, user_id=user.pk, cursor=cursor)
        pages.append((path, page))
        path = page["next"]
    return snapshot, pages, {task.pk for task in tasks}, tab_ids
