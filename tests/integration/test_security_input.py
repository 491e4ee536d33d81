"""Issue 12, "strict input, no 5xx", played against the real Daphne as an attacker would.

Bodies over WORKBENCH_MAX_BODY_BYTES get 413 before they are sent in full, anonymous or not,
and Daphne's memory does not grow by them; JSON nested ~1,000 deep, unknown fields, a `null`
body and numbers for strings get 400 on every write route; a websocket for an out-of-range
workspace id is refused with 4403. Every answer is the API's one error shape, and nothing is
written.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from rest_framework.authtoken.models import Token
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from core.models import Event, Membership, Workspace
from tasks_app.models import Task
from tests.factories import TabFactory, TaskFactory
from tests.integration.services import DaphneServer
from workbench.models import Message, TabState, TabUserState, WorkbenchTab

LIMIT = 1024 * 1024  # WORKBENCH_MAX_BODY_BYTES's default, which the session's Daphne runs with
HUGE = 150_000_000
DEADLINE = 20.0  # seconds to wait for an answer: a server still reading the body never gives one
DEEP = "[" * 1000 + "]" * 1000  # 2 KB
# Rates no test here reaches: each refusal must be the body's, never a 429 because this
# session's other tests (the fuzz test, say) used up the login or creation rates.
UNTHROTTLED = {
    f"WORKBENCH_{name}_RATE": "100000/min"
    for name in (
        "LOGIN",
        "LOGIN_USERNAME",
        "WORKSPACE_CREATE",
        "TASK_CREATE",
        "TAB_CREATE",
        "MESSAGE",
    )
}


@pytest.fixture(scope="module")
def unthrottled(child_env, integration_run) -> Iterator[DaphneServer]:
    """A Daphne of this module's own, with every rate out of reach."""
    server = DaphneServer(
        log_dir=integration_run.log_dir, env=child_env(**UNTHROTTLED), label="daphne-unthrottled"
    )
    integration_run.add(server)
    server.start()
    yield server
    server.stop()


def written() -> tuple[Any, ...]:
    """Everything a write route could change."""
    return (
        Workspace.objects.count(),
        list(Task.objects.values_list("title", "archived_at", "version")),
        list(WorkbenchTab.objects.values_list("state", "title", "model", "version")),
        list(TabUserState.objects.values_list("tab", "user", "draft", "unread")),
        list(Membership.objects.values_list("workspace", "user", "role")),
        Message.objects.count(),
        Event.objects.count(),
        Token.objects.count(),
    )


def raw_exchange(url: str, head: str, parts: list[bytes] | None = None) -> tuple[int, bytes]:
    """Send a request's head and some parts of its body (maybe not all it announced), then
    read the answer until the server closes; (status, body)."""
    address = urlsplit(url)
    deadline = time.monotonic() + DEADLINE
    with socket.create_connection((address.hostname, address.port), timeout=DEADLINE) as sock:
        sock.sendall(head.encode("ascii"))
        try:
            for part in parts or []:
                sock.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before taking everything: read its answer
        received = b""
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            received += data
    status_line, _, rest = received.partition(b"\r\n")
    assert status_line, "no answer before the deadline"
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def request_head(method: str, path: str, headers: dict[str, str]) -> str:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return "\r\n".join(lines) + "\r\n\r\n"


def assert_too_large(status: int, body: bytes) -> None:
    assert status == 413
    assert json.loads(body) == {
        "error": {
            "code": "too_large",
            "message": f"Request bodies are limited to {LIMIT} bytes; nothing was changed.",
            "fields": {},
        }
    }


def auth_headers(member: dict[str, Any], who: str) -> dict[str, str]:
    return {"Authorization": f"Token {member['token']}"} if who == "member" else {}


# -- 413 before the body is read -------------------------------------------------------------


@pytest.mark.parametrize("who", ["anonymous", "member"])
def test_a_huge_declared_body_gets_413_after_its_first_64_kib(member, who):
    before = written()
    head = request_head(
        "POST",
        "/api/workspaces/",
        {
            "Content-Type": "application/json",
            "Content-Length": str(HUGE),
            **auth_headers(member, who),
        },
    )
    # Never more than 64 KiB of the 150 MB: the answer can only come before the body.
    assert_too_large(*raw_exchange(member["http"], head, [b"x" * 65536]))
    assert written() == before


@pytest.mark.parametrize("who", ["anonymous", "member"])
def test_a_chunked_body_gets_413_once_it_passes_the_limit(member, who):
    before = written()
    head = request_head(
        "POST",
        f"/api/workspaces/{member['workspace']}/tasks/",
        {
            "Content-Type": "application/json",
            "Transfer-Encoding": "chunked",
            **auth_headers(member, who),
        },
    )
    piece = b"x" * 65536
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    # Just past the limit, and never the final chunk: a server waiting for it never answers.
    chunks = [chunk] * (LIMIT // len(piece) + 2)
    assert_too_large(*raw_exchange(member["http"], head, chunks))
    assert written() == before


def test_a_20_mb_json_body_sent_in_full_is_a_413_not_a_500(member):
    before = written()
    body = json.dumps({"name": "x" * 20_000_000})
    with httpx.Client(base_url=member["http"], timeout=DEADLINE) as http:
        response = http.post(
            "/api/workspaces/",
            content=body,
            headers={**auth_headers(member, "member"), "Content-Type": "application/json"},
        )
    assert_too_large(response.status_code, response.content)
    assert written() == before


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_150_mb_anonymous_body_does_not_grow_daphnes_memory(member, daphne_server):
    head = request_head(
        "POST",
        "/api/workspaces/",
        {"Content-Type": "application/json", "Content-Length": str(HUGE)},
    )
    piece = b"x" * (1024 * 1024)
    before = rss_bytes(daphne_server.pid)
    # All 150 MB offered; the server closes after the head, so most of it is never sent.
    assert_too_large(*raw_exchange(member["http"], head, [piece] * (HUGE // len(piece) + 1)))
    grown = rss_bytes(daphne_server.pid) - before
    assert grown < 32 * 1024 * 1024, f"Daphne's RSS grew by {grown / 2**20:.0f} MiB"


# -- 400 on every write route ----------------------------------------------------------------


def write_routes(member: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], str | None]]:
    """Every write route on real objects: method, path, a valid body, a field taking a string."""
    workspace = Workspace.objects.get(pk=member["workspace"])
    task = TaskFactory(workspace=workspace)
    tab = TabFactory(task=task, state=TabState.ERROR, error_code="provision_failed")
    owner = workspace.memberships.get(role="owner").user_id
    return [
        ("POST", "/api/workspaces/", {"name": "w"}, "name"),
        ("POST", f"/api/workspaces/{workspace.pk}/tasks/", {"title": "t"}, "title"),
        ("PATCH", f"/api/tasks/{task.pk}/", {"title": "t"}, "title"),
        ("POST", f"/api/tasks/{task.pk}/archive/", {}, None),
        ("POST", f"/api/tasks/{task.pk}/tabs/", {}, "title"),
        ("PATCH", f"/api/tabs/{tab.pk}/", {"draft": "d"}, "draft"),
        ("PATCH", f"/api/tabs/{tab.pk}/", {"model": "mock"}, "model"),
        ("POST", f"/api/workspaces/{workspace.pk}/members/", {"username": "member"}, "username"),
        ("PATCH", f"/api/workspaces/{workspace.pk}/members/{owner}/", {"role": "owner"}, "role"),
        ("POST", f"/api/tabs/{tab.pk}/retry/", {}, None),
        ("POST", f"/api/tabs/{tab.pk}/messages/", {"text": "hi"}, "text"),
        ("POST", f"/api/tabs/{tab.pk}/cancel/", {}, None),
        ("POST", "/api/auth/token/", {"username": "member", "password": "x"}, "username"),
    ]


def assert_bad_request(response: httpx.Response, label: str) -> None:
    where = (response.request.method, response.request.url.path, label, response.text[:300])
    assert response.status_code == 400, where
    assert response.headers["content-type"] == "application/json", where
    error = response.json()["error"]
    assert set(error) == {"code", "message", "fields"}, where
    assert error["code"] in {"invalid", "parse_error"} and error["message"], where


def send_all(server: DaphneServer, member: dict[str, Any], bodies: Any) -> None:
    routes = write_routes(member)
    before = written()
    with httpx.Client(
        base_url=server.url, timeout=DEADLINE, headers=auth_headers(member, "member")
    ) as http:
        for method, path, valid, string_field in routes:
            for label, body in bodies(valid, string_field):
                response = http.request(
                    method, path, content=body, headers={"Content-Type": "application/json"}
                )
                assert_bad_request(response, label)
    assert written() == before


def test_json_nested_a_thousand_deep_is_a_400_on_every_write_route(unthrottled, member):
    send_all(
        unthrottled,
        member,
        lambda valid, _: [
            ("deep body", DEEP),
            ("deep field", json.dumps({**valid, "x": None}).replace("null", DEEP)),
        ],
    )


def test_unknown_fields_null_bodies_and_numbers_for_strings_are_400s_on_every_write_route(
    unthrottled, member
):
    def bodies(valid: dict[str, Any], string_field: str | None) -> list[tuple[str, str]]:
        cases = [
            ("unknown field", json.dumps({**valid, "state": "ready"})),
            ("null body", "null"),
            ("array body", json.dumps([valid])),
            ("string body", json.dumps("text")),
        ]
        if string_field is not None:
            cases.append(("number for a string", json.dumps({**valid, string_field: 12})))
        return cases

    send_all(unthrottled, member, bodies)


# -- the websocket ---------------------------------------------------------------------------


def test_a_websocket_for_an_out_of_range_workspace_id_is_refused_with_4403(member):
    url = member["ws"].replace(f"/{member['workspace']}/", f"/{10**23}/")

    async def scenario() -> int | None:
        headers = {"Authorization": f"Token {member['token']}"}
        async with connect(url, additional_headers=headers, open_timeout=DEADLINE) as ws:
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), DEADLINE)
            return ws.close_code

    assert asyncio.run(scenario()) == 4403


# -- prompts waiting on a tab that is not ready ----------------------------------------------


def test_a_flood_of_prompts_to_a_tab_that_is_not_ready_queues_at_most_the_limit(
    unthrottled, member
):
    """Prompts sent to a tab that is not ready wait as rows until it is: without a bound, one
    member could pile up any number of them (each a row, an event to every member's socket,
    and a turn to run later). 80 at once, past every rate: 50 (WORKBENCH_MAX_QUEUED_PROMPTS's
    default) wait, the rest are 409 `too_many_queued`, and nothing else is written."""
    workspace = Workspace.objects.get(pk=member["workspace"])
    # In error, a tab keeps its prompts until it is retried: nothing delivers them meanwhile.
    tab = TabFactory(task=TaskFactory(workspace=workspace), state=TabState.ERROR)
    limit, sent = 50, 80

    async def flood() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            base_url=unthrottled.url, timeout=DEADLINE, headers=auth_headers(member, "member")
        ) as http:
            return await asyncio.gather(
                *(
                    http.post(f"/api/tabs/{tab.pk}/messages/", json={"text": f"prompt {i}"})
                    for i in range(sent)
                )
            )

    answers = asyncio.run(flood())
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [202] * limit + [409] * (sent - limit), statuses
    refusals = {answer.json()["error"]["code"] for answer in answers if answer.status_code == 409}
    assert refusals == {"too_many_queued"}
    waiting = Message.objects.filter(tab=tab, state="queued")
    assert waiting.count() == limit
    assert Message.objects.filter(tab=tab).count() == limit  # a refused prompt leaves no row
