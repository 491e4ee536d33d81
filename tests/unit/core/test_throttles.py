"""Throttles on logins (per client IP and per username) and on creating workspaces and tasks
(per user): 429 with the API's error body and Retry-After."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from core.throttles import CreateRateThrottle, LoginRateThrottle, LoginUsernameRateThrottle

pytestmark = pytest.mark.django_db


@pytest.fixture
def login_rates(monkeypatch: pytest.MonkeyPatch):
    """`login_rates(ip=..., username=...)`: the login throttles' rates for this test."""

    def set_rates(*, ip: str = "1000/min", username: str = "1000/min") -> None:
        # DRF reads the rates once, at import: patch them where the throttles look.
        monkeypatch.setattr(LoginRateThrottle, "THROTTLE_RATES", {"login": ip})
        monkeypatch.setattr(
            LoginUsernameRateThrottle, "THROTTLE_RATES", {"login_username": username}
        )

    return set_rates


def token_login(username: str, password: str, **extra: str):
    return APIClient().post(
        "/api/auth/token/", {"username": username, "password": password}, format="json", **extra
    )


def assert_throttled(response) -> None:
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "throttled"
    assert 0 < int(response["Retry-After"]) <= 60


def test_token_login_is_throttled_per_username_from_any_address(alice, login_rates):
    login_rates(username="3/min")
    codes = [token_login("alice", "wrong", REMOTE_ADDR=f"10.0.0.{n}").status_code for n in range(3)]
    assert codes == [400, 400, 400]
    refused = token_login("Alice ", "pw", REMOTE_ADDR="10.0.0.9")  # even the right password
    assert_throttled(refused)
    assert "token" not in refused.json()
    assert token_login("bob", "wrong").status_code == 400  # another username


def test_token_login_is_throttled_per_client_ip(alice, login_rates):
    login_rates(ip="3/min")
    assert [token_login(f"user{n}", "pw").status_code for n in range(3)] == [400, 400, 400]
    assert_throttled(token_login("alice", "pw"))
    assert token_login("alice", "pw", REMOTE_ADDR="10.1.1.1").status_code == 200


def test_a_forged_x_forwarded_for_does_not_earn_a_fresh_allowance(alice, login_rates):
    login_rates(ip="2/min")
    codes = [
        token_login(f"user{n}", "pw", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}").status_code
        for n in range(3)
    ]
    assert codes == [400, 400, 429]


def test_the_login_form_is_throttled_and_a_refused_attempt_checks_no_password(
    alice, bob, login_rates
):
    login_rates(username="2/min")
    client = Client()
    for _ in range(2):
        response = client.post("/accounts/login/", {"username": "alice", "password": "nope"})
        assert response.status_code == 200  # the form again, with its error
    refused = client.post("/accounts/login/", {"username": "alice", "password": "pw"})
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 60
    assert b"Too many login attempts" in refused.content
    assert "_auth_user_id" not in client.session  # the right password did not log in
    bobs = Client().post("/accounts/login/", {"username": "bob", "password": "pw"})
    assert bobs.status_code == 302  # another username


def test_the_admin_login_form_shares_the_throttles(alice, login_rates):
    login_rates(ip="2/min")
    client = Client()
    for _ in range(2):
        assert client.post("/admin/login/", {"username": "x", "password": "y"}).status_code == 200
    refused = client.post("/admin/login/", {"username": "alice", "password": "pw"})
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 60
    assert client.get("/admin/login/").status_code == 200  # the form itself is not counted


@pytest.mark.parametrize(
    ("scope", "path", "body"),
    [
        ("workspace_create", "/api/workspaces/", {"name": "w"}),
        ("task_create", "/api/workspaces/{workspace}/tasks/", {"title": "t"}),
    ],
)
def test_creating_workspaces_and_tasks_is_throttled_per_user(
    scope, path, body, client_for, alice, bob, workspace, monkeypatch
):
    monkeypatch.setattr(CreateRateThrottle, "THROTTLE_RATES", {scope: "3/min"})
    url = path.format(workspace=workspace.pk)
    codes = [client_for(alice).post(url, body, format="json").status_code for _ in range(4)]
    assert codes == [201, 201, 201, 429]
    assert_throttled(client_for(alice).post(url, body, format="json"))
    assert client_for(alice).get(url).status_code == 200  # reads are not throttled
    assert client_for(bob).post(url, body, format="json").status_code == 201  # per user
