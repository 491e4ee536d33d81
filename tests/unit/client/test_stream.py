"""The sync socket against a local websockets server (no service): the snapshot, ordered
events, a reconnect that asks only for what was missed, and how refusals are told apart."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
from websockets.sync.server import ServerConnection, serve

from workbench_client import (
    AuthenticationError,
    NotFound,
    PermissionDenied,
    SyncStream,
    WaitTimeout,
)
from workbench_client.stream import _refusal, http_base, ws_url


def snapshot(seq: int) -> str:
    frame = {"type": "snapshot", "seq": seq, "me": 1, "workspace": {"id": 3}, "members": []}
    return json.dumps({**frame, "tasks": [], "tabs": [], "next": None})


def event(seq: int) -> str:
    return json.dumps({"type": "event", "seq": seq, "event": "private", "data": {}})


@pytest.fixture
def server():
    """A websockets server on a free port running `handler` per connection; the paths asked."""
    paths: list[str] = []
    state: dict = {"handler": None}

    def handle(ws: ServerConnection) -> None:
        paths.append(ws.request.path)
        state["handler"](ws, len(paths))

    with serve(handle, "127.0.0.1", 0) as running:
        threading.Thread(target=running.serve_forever, daemon=True).start()
        port = running.socket.getsockname()[1]
        yield f"ws://127.0.0.1:{port}/ws/workspaces/3/", paths, state
        running.shutdown()


def test_it_reconnects_after_a_drop_asking_from_its_last_seq_and_resumes_a_gap(server):
    url, paths, state = server
    resumes: list[dict] = []

    def handler(ws: ServerConnection, nth: int) -> None:
        if nth == 1:
            ws.send(snapshot(5))
            ws.send(event(6))
            ws.close(1011)  # the server went away
            return
        ws.send(event(7))  # the replay from ?seq=6
        ws.send(event(9))  # a gap: 8 is missing
        resumes.append(json.loads(ws.recv(timeout=10)))
        ws.send(event(8))
        ws.send(event(9))
        ws.recv(timeout=10)  # hold the socket until the client leaves

    state["handler"] = handler
    with SyncStream(url, token="tok", max_backoff=0.2) as stream:
        assert stream.open(timeout=10).kind == "snapshot"
        applied = []
        for received in stream.frames(deadline=time.monotonic() + 20):
            if received.kind == "event":
                applied.append(received.frame["seq"])
            if applied[-1:] == [9]:
                break
    assert applied == [6, 7, 8, 9]
    assert paths == ["/ws/workspaces/3/", "/ws/workspaces/3/?seq=6"]
    assert resumes == [{"type": "resume", "seq": 7}]
    assert stream.connects == 2 and stream.state.resumes == 1


def test_it_pings_while_idle_and_a_deadline_ends_the_wait(server):
    url, _, state = server
    pings: list[dict] = []

    def handler(ws: ServerConnection, nth: int) -> None:
        ws.send(snapshot(1))
        for _ in range(2):
            pings.append(json.loads(ws.recv(timeout=10)))
            ws.send(json.dumps({"type": "pong", "seq": 1}))
        ws.recv(timeout=10)

    state["handler"] = handler
    with SyncStream(url, heartbeat=0.2) as stream:
        stream.open(timeout=10)
        with pytest.raises(WaitTimeout):
            for _ in stream.frames(deadline=time.monotonic() + 1.0):
                pass
    assert pings[:2] == [{"type": "ping"}, {"type": "ping"}]


def refusal(status: int, code: str) -> Exception:
    body = {"error": {"code": code, "message": "no", "fields": {}}}
    return _refusal("ws://h/ws/workspaces/3/", httpx.Response(status, json=body))


def test_a_4403_is_told_apart_by_the_rest_answer_for_the_same_workspace():
    assert isinstance(refusal(401, "authentication_failed"), AuthenticationError)
    foreign = refusal(404, "workspace_not_found")
    assert isinstance(foreign, NotFound) and foreign.code == "workspace_not_found"
    raced = _refusal("ws://h/ws/workspaces/3/", httpx.Response(200, json=[]))
    assert isinstance(raced, PermissionDenied) and raced.code == "socket_refused"


def test_urls_map_between_http_and_websocket():
    assert ws_url("https://wb.example.com/", 3) == "wss://wb.example.com/ws/workspaces/3/"
    assert ws_url("http://127.0.0.1:8000", 1) == "ws://127.0.0.1:8000/ws/workspaces/1/"
    assert http_base("wss://wb.example.com/ws/workspaces/3/?seq=4") == "https://wb.example.com"
