"""Session CSRF, throttling, quotas and production settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from core.errors import Conflict
from tests.factories import TaskFactory
from workbench import services

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[3]


def test_session_auth_requires_the_csrf_token(alice, workspace):
    client = APIClient(enforce_csrf_checks=True)
    client.login(username="alice", password="pw")
    url = f"/api/workspaces/{workspace.pk}/tasks/"
    refused = client.post(url, {"title": "no token"}, format="json")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["error"]["message"]
    assert client.get(url).status_code == 200  # reads need no token
    client.get("/admin/login/")  # sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    accepted = client.post(url, {"title": "with token"}, format="json", HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 201


def test_token_auth_needs_no_csrf_token(alice, workspace):
    from rest_framework.authtoken.models import Token

    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=alice).key}")
    response = client.post(f"/api/workspaces/{workspace.pk}/tasks/", {"title": "t"}, format="json")
    assert response.status_code == 201


def test_opening_tabs_is_throttled_per_user(
    client_for, alice, bob, workspace, monkeypatch, dispatched
):
    from core.throttles import CreateRateThrottle

    # DRF reads the rates once, at import: patch them where the throttle looks.
    monkeypatch.setattr(CreateRateThrottle, "THROTTLE_RATES", {"tab_create": "3/min"})
    task = TaskFactory(workspace=workspace)
    url = f"/api/tasks/{task.pk}/tabs/"
    codes = [client_for(alice).post(url, {}, format="json").status_code for _ in range(4)]
    assert codes == [201, 201, 201, 429]
    assert client_for(alice).get(url).status_code == 200  # reads are not throttled
    assert client_for(bob).post(url, {}, format="json").status_code == 201  # per user


def test_a_user_cannot_hold_more_open_tabs_than_the_limit(alice, settings, dispatched):
    settings.WORKBENCH_MAX_OPEN_TABS_PER_USER = 2
    first, second = TaskFactory(), TaskFactory()
    services.tab_create(user=alice, task=first)
    services.tab_create(user=alice, task=second)
    with pytest.raises(Conflict) as refused:
        services.tab_create(user=alice, task=first)
    assert refused.value.code == "too_many_tabs_for_user"


def _settings_error(**env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", **env},
    )
    return result.stderr if result.returncode else ""


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"WORKBENCH_DEBUG": "1", "WORKBENCH_SECRET_KEY": "k"}, "WORKBENCH_DEBUG"),
        ({}, "WORKBENCH_SECRET_KEY"),
        ({"WORKBENCH_SECRET_KEY": "k", "WORKBENCH_ALLOWED_HOSTS": "*"}, "wildcards"),
        ({"WORKBENCH_SECRET_KEY": "k", "WORKBENCH_ALLOWED_HOSTS": "*.example.com"}, "wildcards"),
    ],
)
def test_production_settings_refuse_unsafe_configuration(env, complaint):
    assert complaint in _settings_error(WORKBENCH_PRODUCTION="1", **env)


def test_production_settings_accept_a_safe_configuration():
    assert (
        _settings_error(
            WORKBENCH_PRODUCTION="1",
            WORKBENCH_SECRET_KEY="k",
            WORKBENCH_ALLOWED_HOSTS="workbench.example.com",
        )
        == ""
    )


def test_a_malformed_setting_is_refused_with_its_name():
    assert "WORKBENCH_STALL_SECONDS" in _settings_error(WORKBENCH_STALL_SECONDS="soon")
