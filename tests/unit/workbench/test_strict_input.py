"""Strict input on every write route: unknown fields, a body that is not an object, values of
the wrong JSON type and JSON nested too deep are 400s in the one error shape, and change
nothing; a websocket path with an out-of-range id is the ordinary refusal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from rest_framework.authtoken.models import Token

from config.asgi import application
from core.models import Event, Membership, Workspace
from tasks_app.models import Task
from tests.factories import TabFactory, TaskFactory
from workbench.models import Message, TabState, TabUserState, WorkbenchTab

pytestmark = pytest.mark.django_db(transaction=True)

DEEP = "[" * 1000 + "]" * 1000  # ~2 KB: a RecursionError in Python's decoder


@pytest.fixture(autouse=True)
def _unthrottled() -> Iterator[None]:
    """Every refusal here must be the body's, never a 429 from the many requests."""
    with mock.patch("rest_framework.views.APIView.get_throttles", return_value=[]):
        yield


@pytest.fixture
def task(workspace):
    """A task in alice's workspace."""
    return TaskFactory(workspace=workspace)


@pytest.fixture
def tab(task):
    """An error tab on that task (so retry would be allowed)."""
    return TabFactory(task=task, state=TabState.ERROR, error_code="provision_failed")


def write_routes(workspace, task, tab, bob) -> list[tuple[str, str, dict[str, Any], str | None]]:
    """Every write route: method, path, a valid body, and a field that takes a string."""
    return [
        ("post", "/api/workspaces/", {"name": "w"}, "name"),
        ("post", f"/api/workspaces/{workspace.pk}/tasks/", {"title": "t"}, "title"),
        ("patch", f"/api/tasks/{task.pk}/", {"title": "t"}, "title"),
        ("post", f"/api/tasks/{task.pk}/archive/", {}, None),
        ("post", f"/api/tasks/{task.pk}/tabs/", {}, "title"),
        ("patch", f"/api/tabs/{tab.pk}/", {"draft": "d"}, "draft"),
        ("patch", f"/api/tabs/{tab.pk}/", {"model": "mock"}, "model"),
        ("post", f"/api/workspaces/{workspace.pk}/members/", {"username": "bob"}, "username"),
        ("patch", f"/api/workspaces/{workspace.pk}/members/{bob.pk}/", {"role": "owner"}, "role"),
        ("post", f"/api/tabs/{tab.pk}/retry/", {}, None),
        ("post", f"/api/tabs/{tab.pk}/messages/", {"text": "hi"}, "text"),
        ("post", f"/api/tabs/{tab.pk}/cancel/", {}, None),
        ("post", "/api/auth/token/", {"username": "alice", "password": "pw"}, "username"),
    ]


def written() -> tuple[Any, ...]:
    """Everything a write route could change."""
    return (
        Workspace.objects.count(),
        list(WorkbenchTab.objects.values_list("state", "title", "model", "version")),
        list(TabUserState.objects.values_list("tab", "user", "draft", "unread")),
        list(Membership.objects.values_list("workspace", "user", "role")),
        list(Task.objects.values_list("title", "archived_at", "version")),
        Message.objects.count(),
        Event.objects.count(),
        Token.objects.count(),
    )


def bad_bodies(valid: dict[str, Any], string_field: str | None) -> list[tuple[str, str]]:
    bodies = [
        ("unknown field", json.dumps({**valid, "state": "ready"})),
        ("null", "null"),
        ("array", json.dumps([valid])),
        ("string", json.dumps("text")),
        ("too deep", DEEP),
        ("too deep in a field", json.dumps({**valid, "x": None}).replace("null", DEEP)),
    ]
    if string_field is not None:
        bodies += [
            ("number for a string", json.dumps({**valid, string_field: 12})),
            ("boolean for a string", json.dumps({**valid, string_field: True})),
        ]
    return bodies


def test_every_write_route_refuses_bad_bodies_with_a_400_and_writes_nothing(
    client_for, alice, bob, workspace, task, tab, dispatched
):
    alice.set_password("pw")
    alice.save()
    client = client_for(alice)
    before = written()
    for method, path, valid, string_field in write_routes(workspace, task, tab, bob):
        for label, body in bad_bodies(valid, string_field):
            response = getattr(client, method)(path, body, content_type="application/json")
            assert response.status_code == 400, (path, label, response.content)
            error = response.json()["error"]
            assert set(error) == {"code", "message", "fields"}, (path, label)
            assert error["code"] in {"invalid", "parse_error"}, (path, label, error)
            assert error["message"], (path, label)
    assert written() == before


def test_an_unknown_field_is_named_in_the_error(client_for, alice, workspace):
    response = client_for(alice).post(
        f"/api/workspaces/{workspace.pk}/tasks/",
        {"title": "t", "titel": "typo"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "invalid",
        "message": "titel: this field is read-only or unknown",
        "fields": {"titel": ["this field is read-only or unknown"]},
    }


def test_a_null_body_is_refused_even_where_every_field_is_optional(client_for, alice, task):
    response = client_for(alice).post(
        f"/api/tasks/{task.pk}/tabs/", "null", content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "expected a JSON object, got null"
    assert not WorkbenchTab.objects.exists()


def test_actions_without_input_still_take_no_body_or_an_empty_object(
    client_for, alice, task, tab, dispatched
):
    client = client_for(alice)
    assert client.post(f"/api/tabs/{tab.pk}/retry/").status_code == 200
    response = client.post(f"/api/tasks/{task.pk}/archive/", {}, format="json")
    assert response.status_code == 200


def test_the_token_endpoint_takes_a_form_and_refuses_unknown_fields_there_too(api_client, alice):
    alice.set_password("pw")
    alice.save()
    ok = api_client.post("/api/auth/token/", {"username": "alice", "password": "pw"})
    assert ok.status_code == 200
    assert set(ok.json()) == {"token"}
    extra = api_client.post(
        "/api/auth/token/", {"username": "alice", "password": "pw", "token": "mine"}
    )
    assert extra.status_code == 400
    assert extra.json()["error"]["fields"] == {"token": ["this field is read-only or unknown"]}


@pytest.mark.parametrize("workspace_id", [2**63, 10**23])
def test_a_websocket_for_an_out_of_range_workspace_id_is_refused_with_4403(workspace_id, alice):
    key = Token.objects.create(user=alice).key

    async def scenario() -> None:
        communicator = WebsocketCommunicator(
            application,
            f"/ws/workspaces/{workspace_id}/",
            headers=[(b"authorization", f"Token {key}".encode())],
        )
        connected, _ = await communicator.connect(timeout=5)
        assert connected
        output = await communicator.receive_output(timeout=5)
        assert output == {"type": "websocket.close", "code": 4403}
        await communicator.disconnect()

    async_to_sync(scenario)()
