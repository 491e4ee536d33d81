"""The REST client over httpx's MockTransport: requests it builds, answers it reads, errors it
raises (by status, with the API's code, message and fields), and lists it follows by `Link`."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from workbench_client import (
    AsyncWorkbench,
    AuthenticationError,
    BadRequest,
    Conflict,
    ConnectionFailed,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    Workbench,
    WorkbenchAPIError,
)

BASE = "http://wb.test"


def error(status: int, code: str, message: str = "no", fields=None, headers=None):
    body = {"error": {"code": code, "message": message, "fields": fields or {}}}
    return httpx.Response(status, json=body, headers=headers or {})


def client(handler, token: str | None = "tok") -> Workbench:
    return Workbench(BASE, token=token, transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequest),
        (401, AuthenticationError),
        (403, PermissionDenied),
        (404, NotFound),
        (409, Conflict),
        (413, PayloadTooLarge),
        (429, RateLimited),
        (503, ServiceUnavailable),
        (500, ServerError),
        (415, WorkbenchAPIError),
    ],
)
def test_it_raises_the_class_of_each_error_status_with_the_apis_code(status, cls):
    fields = {"text": ["This field is required."]}
    wb = client(lambda request: error(status, f"code_{status}", "why", fields))
    with pytest.raises(cls) as raised:
        wb.tab("t1")
    assert type(raised.value) is cls
    assert raised.value.status == status
    assert raised.value.code == f"code_{status}"
    assert raised.value.message == "why"
    assert raised.value.fields == fields
    assert raised.value.as_dict()["error"]["code"] == f"code_{status}"


def test_a_bad_token_and_a_foreign_workspace_are_different_errors():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") != "Token good":
            return error(401, "authentication_failed", "Invalid token.")
        return error(404, "workspace_not_found", "No such workspace.")

    with pytest.raises(AuthenticationError) as bad:
        list(client(handler, token="bad").tasks(7))
    with pytest.raises(NotFound) as foreign:
        list(client(handler, token="good").tasks(7))
    assert (bad.value.code, foreign.value.code) == ("authentication_failed", "workspace_not_found")
    assert not isinstance(bad.value, NotFound) and not isinstance(
        foreign.value, AuthenticationError
    )


def test_an_answer_that_is_not_the_envelope_still_raises_by_status():
    wb = client(lambda request: httpx.Response(502, text="<html>bad gateway</html>"))
    with pytest.raises(ServerError) as raised:
        wb.agents()
    assert raised.value.code == "http_502"


def test_429_and_503_expose_retry_after_and_a_short_one_is_retried_once():
    answers = [
        error(429, "throttled", headers={"Retry-After": "0"}),
        httpx.Response(200, json=[{"name": "mock", "models": [], "default_model": ""}]),
    ]
    wb = client(lambda request: answers.pop(0))
    assert wb.agents()[0]["name"] == "mock"
    assert answers == []

    long = client(lambda request: error(503, "unavailable", headers={"Retry-After": "60"}))
    with pytest.raises(ServiceUnavailable) as raised:
        long.agents()  # not retried: the wait is the caller's to choose
    assert raised.value.retry_after == 60.0


def test_a_transport_failure_is_connection_failed():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(ConnectionFailed):
        client(handler).workspaces().__next__()


def test_lists_follow_the_link_header_lazily_to_the_last_page():
    requested: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requested.append(str(request.url))
        cursor = request.url.params.get("cursor")
        page = {None: 1, "c2": 2, "c3": 3}[cursor]
        headers = {}
        if page < 3:
            nxt = f"{BASE}/api/workspaces/1/tasks/?cursor=c{page + 1}"
            headers["Link"] = f'<{nxt}>; rel="next"'
        return httpx.Response(200, json=[{"id": page * 10 + n} for n in range(2)], headers=headers)

    tasks = client(handler).tasks(1)
    assert next(tasks)["id"] == 10
    assert len(requested) == 1  # one page at a time
    assert [t["id"] for t in tasks] == [11, 20, 21, 30, 31]
    assert requested[1:] == [
        f"{BASE}/api/workspaces/1/tasks/?cursor=c2",
        f"{BASE}/api/workspaces/1/tasks/?cursor=c3",
    ]


def test_the_transcript_pages_are_read_from_their_results():
    def handler(request: httpx.Request) -> httpx.Response:
        if "cursor" in request.url.params:
            return httpx.Response(
                200, json={"next": None, "previous": None, "results": [{"id": 2}]}
            )
        nxt = f"{BASE}/api/tabs/t1/messages/?cursor=x"
        body = {"next": nxt, "previous": None, "results": [{"id": 1}]}
        return httpx.Response(200, json=body, headers={"Link": f'<{nxt}>; rel="next"'})

    assert [m["id"] for m in client(handler).messages("t1")] == [1, 2]


def test_requests_carry_the_token_the_body_and_the_idempotency_key():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "DELETE":
            return httpx.Response(204)
        return httpx.Response(201, json={"id": "t1", "state": "pending_provision"})

    wb = client(handler)
    wb.create_task(3, "hello", prompt="hi", agent=None)
    wb.open_tab(5, wait=None)
    wb.open_tab(5, wait=None, idempotency_key="k1")
    assert wb.close_tab("t1") is None
    create, open1, open2, close = seen
    assert create.headers["Authorization"] == "Token tok"
    assert create.url.path == "/api/workspaces/3/tasks/"
    assert json.loads(create.content) == {"title": "hello", "prompt": "hi"}
    assert open1.url.path == "/api/tasks/5/tabs/" and len(open1.headers["Idempotency-Key"]) == 32
    assert open2.headers["Idempotency-Key"] == "k1"
    assert (close.method, close.url.path) == ("DELETE", "/api/tabs/t1/")


def test_flags_are_sent_as_query_parameters():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=[])

    wb = client(handler)
    list(wb.tasks(3, include_archived=True))
    list(wb.tabs(4))
    assert seen[0].url.params["include_archived"] == "true"
    assert "include_closed" not in seen[1].url.params


def test_login_keeps_the_token_for_later_calls():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/api/auth/token/":
            return httpx.Response(200, json={"token": "fresh"})
        return httpx.Response(200, json=[])

    wb = client(handler, token=None)
    assert wb.login("demo", "demo") == "fresh"
    list(wb.workspaces())
    assert "Authorization" not in seen[0].headers
    assert json.loads(seen[0].content) == {"username": "demo", "password": "demo"}
    assert seen[1].headers["Authorization"] == "Token fresh"


def test_the_async_client_shares_the_requests_errors_and_pages():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/tabs/gone/":
            return error(404, "tab_not_found")
        if request.url.path == "/api/tabs/t1/messages/" and request.method == "POST":
            return error(409, "tab_closed", "The tab is closed.")
        if "cursor" in request.url.params:
            return httpx.Response(200, json=[{"id": 2}])
        link = f'<{BASE}/api/workspaces/?cursor=n>; rel="next"'
        return httpx.Response(200, json=[{"id": 1}], headers={"Link": link})

    async def scenario() -> None:
        async with AsyncWorkbench(BASE, token="tok", transport=httpx.MockTransport(handler)) as wb:
            assert [w["id"] async for w in wb.workspaces()] == [1, 2]
            with pytest.raises(NotFound) as missing:
                await wb.tab("gone")
            assert missing.value.code == "tab_not_found"
            with pytest.raises(Conflict) as closed:
                await wb.send("t1", "hi", wait=False)
            assert closed.value.code == "tab_closed" and closed.value.status == 409

    asyncio.run(scenario())
