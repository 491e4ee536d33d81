"""Every list of the API is cursor-paginated: the body is one page of items, the rest is
reached by following `Link: <…>; rel="next"`, and following it yields each item once."""

from __future__ import annotations

import re

import pytest

from core.models import Membership
from tests.factories import TabFactory, TaskFactory, UserFactory, WorkspaceFactory

pytestmark = pytest.mark.django_db

NEXT = re.compile(r'<([^>]+)>; rel="next"')


def every_page(client, path: str) -> tuple[list, int]:
    items, pages, url = [], 0, path
    while url:
        answer = client.get(url)
        assert answer.status_code == 200, answer.content[:300]
        body = answer.json()
        items += body["results"] if isinstance(body, dict) else body
        pages += 1
        found = NEXT.search(answer.headers.get("Link", ""))
        url = found.group(1) if found else None
    return items, pages


@pytest.mark.parametrize("route", ["workspaces", "members", "tasks", "tabs", "messages"])
def test_each_list_is_paged_by_link_headers_and_every_item_comes_once(
    route, client_for, workspace, alice
):
    task = TaskFactory(workspace=workspace)
    paths = {
        "workspaces": "/api/workspaces/?page_size=2",
        "members": f"/api/workspaces/{workspace.pk}/members/?page_size=2",
        "tasks": f"/api/workspaces/{workspace.pk}/tasks/?page_size=2",
        "tabs": f"/api/tasks/{task.pk}/tabs/?page_size=2",
    }
    if route == "workspaces":
        for n in range(4):
            Membership.objects.create(workspace=WorkspaceFactory(name=f"w{n}"), user=alice)
        expected = 5
    elif route == "members":
        for _ in range(3):
            Membership.objects.create(workspace=workspace, user=UserFactory())
        expected = 5
    elif route == "tasks":
        TaskFactory.create_batch(4, workspace=workspace)
        expected = 5
    elif route == "tabs":
        TabFactory.create_batch(5, task=task)
        expected = 5
    else:
        from workbench.models import Message

        tab = TabFactory(task=task)
        for n in range(5):
            Message.objects.create(
                tab=tab, workspace=workspace, role="user", text=str(n), state="complete"
            )
        paths["messages"] = f"/api/tabs/{tab.pk}/messages/?page_size=2"
        expected = 5
    items, pages = every_page(client_for(alice), paths[route])
    keys = [item.get("id", item.get("user")) for item in items]
    assert len(keys) == expected == len(set(keys))
    assert pages == 3


@pytest.mark.parametrize("route", ["workspaces", "members", "tasks", "tabs", "messages"])
def test_a_cursor_the_list_never_gave_is_a_400_not_a_missing_list(
    route, client_for, workspace, alice
):
    task = TaskFactory(workspace=workspace)
    tab = TabFactory(task=task)
    paths = {
        "workspaces": "/api/workspaces/",
        "members": f"/api/workspaces/{workspace.pk}/members/",
        "tasks": f"/api/workspaces/{workspace.pk}/tasks/",
        "tabs": f"/api/tasks/{task.pk}/tabs/",
        "messages": f"/api/tabs/{tab.pk}/messages/",
    }
    answer = client_for(alice).get(paths[route] + "?cursor=not-a-cursor")
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_cursor"
