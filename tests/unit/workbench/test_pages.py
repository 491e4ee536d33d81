"""The browser workbench's server side: login, the shell page, static files, session auth."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
from django.test import Client
from rest_framework.test import APIClient

from tests.factories import TaskFactory

pytestmark = pytest.mark.django_db


def test_it_sends_anonymous_visitors_to_the_login_page():
    response = Client().get("/")

    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/"


def test_it_logs_in_through_the_form_and_serves_the_shell(alice):
    client = Client()
    assert client.get("/accounts/login/").status_code == 200

    response = client.post("/accounts/login/", {"username": "alice", "password": "pw"})
    assert response.status_code == 302 and response["Location"] == "/"

    page = client.get("/")
    assert page.status_code == 200
    assert b'<script type="module" src="/static/workbench/app.js">' in page.content
    assert b'role="status"' in page.content  # the connection indicator
    assert "csrftoken" in page.cookies  # the page's REST calls send it back
    assert "default-src 'self'" in page["Content-Security-Policy"]


def test_it_rejects_a_wrong_password_on_the_form(alice):
    response = Client().post("/accounts/login/", {"username": "alice", "password": "nope"})

    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content


def test_logging_out_takes_a_post_and_ends_the_session(alice):
    client = Client()
    client.force_login(alice)

    response = client.post("/accounts/logout/")

    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert client.get("/").status_code == 302


def test_the_asgi_app_serves_the_workbench_modules():
    from config.asgi import application

    async def fetch(path: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return await c.get(path)

    response = asyncio.run(fetch("/static/workbench/app.js"))
    assert response.status_code == 200
    assert "javascript" in response.headers["content-type"]  # module scripts need it
    assert asyncio.run(fetch("/static/workbench/missing.js")).status_code == 404


def test_a_browser_session_can_open_a_tab(alice, workspace, dispatched):
    """request.user is a lazy object under session auth (not so with force_authenticate)."""
    task = TaskFactory(workspace=workspace)
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(alice)
    client.get("/")  # sets the CSRF cookie, as the shell does
    token = client.cookies["csrftoken"].value

    response = client.post(
        f"/api/tasks/{task.pk}/tabs/", {}, format="json", headers={"X-CSRFToken": token}
    )

    assert response.status_code == 201, response.content
    assert response.json()["state"] == "pending_provision"


def test_a_browser_session_without_the_csrf_token_is_refused(alice, workspace, dispatched):
    task = TaskFactory(workspace=workspace)
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(alice)

    response = client.post(f"/api/tasks/{task.pk}/tabs/", {}, format="json")

    assert response.status_code == 403
    dispatched.assert_not_called()


def test_the_page_preloads_every_module_app_js_reaches(alice):
    """The browser fetches them all at once instead of one import level at a time: the
    list is the graph the modules' import lines make, nothing missing and nothing extra."""
    from tests.unit.test_browser_module_layers import GRAPH

    reached, todo = set(), ["app.js"]
    while todo:
        for target in GRAPH[todo.pop()] - reached:
            reached.add(target)
            todo.append(target)
    client = Client()
    client.force_login(alice)
    page = client.get("/").content.decode()
    preloaded = set(
        re.findall(r'<link rel="modulepreload" href="/static/workbench/([^"]+)">', page)
    )
    assert preloaded == reached
