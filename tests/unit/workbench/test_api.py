"""The REST API: owner, member and outsider on every route, and one error shape."""

from __future__ import annotations

import os
import uuid

import pytest
from rest_framework.test import APIClient

from tests.factories import TabFactory, TaskFactory
from workbench.models import TabState

pytestmark = pytest.mark.django_db


@pytest.fixture
def task(workspace):
    """A task in alice's workspace."""
    return TaskFactory(workspace=workspace)


@pytest.fixture
def tab(task):
    """An error tab on that task (so retry is allowed)."""
    return TabFactory(task=task, state=TabState.ERROR, error_code="provision_failed")


def routes(workspace, task, tab):
    return [
        ("get", f"/api/workspaces/{workspace.pk}/tasks/", None, 200),
        ("post", f"/api/workspaces/{workspace.pk}/tasks/", {"title": "t"}, 201),
        ("get", f"/api/workspaces/{workspace.pk}/workbench/", None, 200),
        ("get", f"/api/tasks/{task.pk}/", None, 200),
        ("patch", f"/api/tasks/{task.pk}/", {"title": "renamed"}, 200),
        ("get", f"/api/tasks/{task.pk}/tabs/", None, 200),
        ("post", f"/api/tasks/{task.pk}/tabs/", {}, 201),
        ("get", f"/api/tabs/{tab.pk}/", None, 200),
        ("patch", f"/api/tabs/{tab.pk}/", {"draft": "d"}, 200),
        ("post", f"/api/tabs/{tab.pk}/retry/", None, 200),
        ("delete", f"/api/tabs/{tab.pk}/", None, 204),
        ("post", f"/api/tasks/{task.pk}/archive/", None, 200),
    ]


@pytest.mark.parametrize("who", ["alice", "bob"])
def test_owner_and_member_can_use_every_route(
    who, request, client_for, workspace, task, tab, dispatched
):
    client = client_for(request.getfixturevalue(who))
    for method, url, body, expected in routes(workspace, task, tab):
        response = getattr(client, method)(url, body, format="json")
        assert response.status_code == expected, (method, url, response.content)


def test_an_outsider_gets_404_everywhere_and_changes_nothing(
    client_for, charlie, workspace, task, tab, dispatched
):
    client = client_for(charlie)
    for method, url, body, _ in routes(workspace, task, tab):
        response = getattr(client, method)(url, body, format="json")
        assert response.status_code == 404, (method, url)
        assert response.json()["error"]["code"].endswith("not_found")
    tab.refresh_from_db()
    assert tab.state == TabState.ERROR
    dispatched.assert_not_called()


def test_anonymous_requests_get_401(api_client, workspace, task, tab):
    for method, url, body, _ in routes(workspace, task, tab):
        response = getattr(api_client, method)(url, body, format="json")
        assert response.status_code == 401, (method, url)


def test_it_lists_only_my_workspaces(client_for, charlie, workspace):
    assert client_for(charlie).get("/api/workspaces/").json() == []
    created = client_for(charlie).post("/api/workspaces/", {"name": "Mine"}, format="json")
    assert created.status_code == 201
    assert created.json()["role"] == "owner"
    names = [w["name"] for w in client_for(charlie).get("/api/workspaces/").json()]
    assert names == ["Mine"]


def test_opening_a_tab_returns_the_placeholder(client_for, alice, task, dispatched):
    response = client_for(alice).post(f"/api/tasks/{task.pk}/tabs/", {"title": "hi"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["state"] == "pending_provision"
    assert body["title"] == "hi"
    uuid.UUID(body["id"])


def test_an_idempotency_key_replay_returns_the_same_tab(client_for, alice, task, dispatched):
    client = client_for(alice)
    url = f"/api/tasks/{task.pk}/tabs/"
    first = client.post(url, {}, format="json", HTTP_IDEMPOTENCY_KEY="abc")
    second = client.post(url, {}, format="json", HTTP_IDEMPOTENCY_KEY="abc")
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    assert second["Idempotent-Replayed"] == "true"
    assert len(client.get(url).json()) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": ""}, "title"),
        ({"title": "x", "provider": "nope"}, "provider"),
        ({"title": "x", "agent": "nope"}, "agent"),
        ({"title": "x", "branch": "--upload-pack=x"}, "branch"),
        ({"title": "x", "repository": "-oops"}, "repository"),
        ({"title": "x" * 201}, "title"),
    ],
)
def test_bad_task_input_is_a_400_naming_the_field(client_for, alice, workspace, body, field):
    response = client_for(alice).post(f"/api/workspaces/{workspace.pk}/tasks/", body, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["fields"]


def test_malformed_json_is_a_400(client_for, alice, workspace):
    response = client_for(alice).generic(
        "POST", f"/api/workspaces/{workspace.pk}/tasks/", "{nope", content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"


def test_state_and_session_fields_are_read_only(client_for, alice, tab):
    response = client_for(alice).patch(
        f"/api/tabs/{tab.pk}/", {"state": "ready", "session_id": "x"}, format="json"
    )
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"state", "session_id"}
    tab.refresh_from_db()
    assert tab.state == TabState.ERROR


def test_retry_outside_error_is_a_409_with_the_reason(client_for, alice, task):
    pending = TabFactory(task=task, state=TabState.PENDING_PROVISION)
    response = client_for(alice).post(f"/api/tabs/{pending.pk}/retry/")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_in_error"


def test_unknown_ids_and_routes_are_json_404s(client_for, alice):
    client = client_for(alice)
    for url in [
        f"/api/tabs/{uuid.uuid4()}/",
        "/api/tasks/999999/",
        "/api/tabs/not-a-uuid/",
        "/api/nothing-here/",
    ]:
        response = client.get(url)
        assert response.status_code == 404, url
        assert "error" in response.json()


def test_the_token_endpoint_exchanges_credentials(api_client, alice):
    ok = api_client.post("/api/auth/token/", {"username": "alice", "password": "pw"}, format="json")
    assert ok.status_code == 200
    token = ok.json()["token"]
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert api_client.get("/api/workspaces/").status_code == 200
    bad = APIClient().post(
        "/api/auth/token/", {"username": "alice", "password": "no"}, format="json"
    )
    assert bad.status_code == 400


def test_the_schema_and_docs_are_served(client_for, alice):
    client = client_for(alice)
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    assert "/api/tasks/{task_id}/tabs/" in schema.json()["paths"]
    assert "/api/workspaces/{workspace_id}/members/{user_id}/" in schema.json()["paths"]
    assert client.get("/api/docs/").status_code == 200


def test_the_sandbox_token_is_never_exposed(client_for, alice, task):
    from tests.factories import SandboxFactory

    SandboxFactory(task=task, token="very-secret")
    body = client_for(alice).get(f"/api/tasks/{task.pk}/").content.decode()
    assert "very-secret" not in body
    assert "base_url" not in body


def test_the_schema_generates_without_warnings():
    """Every view says what it takes and answers (drf-spectacular warns otherwise)."""
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", os.devnull)
