"""Bodies over WORKBENCH_MAX_BODY_BYTES: refused by Daphne's request before they are read
(config/server.py), by the ASGI handler under any server (config/handlers.py), and by the
API's exception handler where Django's own check fires (config/api.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import async_to_sync
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from config.asgi import django_asgi_app
from config.server import BoundedHTTPFactory, BoundedServer

LIMIT = 1000
TOO_LARGE = {
    "error": {
        "code": "too_large",
        "message": f"Request bodies are limited to {LIMIT} bytes; nothing was changed.",
        "fields": {},
    }
}


@pytest.fixture(autouse=True)
def _small_limit(settings) -> None:
    settings.WORKBENCH_MAX_BODY_BYTES = LIMIT


# -- Daphne's request (config/server.py) ------------------------------------------------------


class Connection:
    """One HTTP connection to a BoundedServer, over an in-memory transport."""

    def __init__(self) -> None:
        self.application = mock.AsyncMock()
        self.server = BoundedServer(application=self.application, endpoints=["tcp:0"])
        self.server.connections = {}  # what Server.run() sets up
        self.server.create_application = mock.Mock(wraps=self.server.create_application)
        factory = BoundedHTTPFactory(self.server)
        factory.timeOut = None  # no idle timer on the (not running) reactor
        self.protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 8000))
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def response(self) -> tuple[bytes, dict[str, Any]]:
        head, _, body = self.transport.value().partition(b"\r\n\r\n")
        return head, json.loads(body)


@pytest.fixture
def connection() -> Iterator[Connection]:
    conn = Connection()
    yield conn
    conn.protocol.connectionLost(None)


def post_head(*headers: str) -> bytes:
    lines = ["POST /api/workspaces/ HTTP/1.1", "Host: testserver", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def test_a_declared_length_over_the_limit_is_refused_at_the_end_of_the_headers(connection):
    connection.send(post_head(f"Content-Length: {150_000_000}") + b"x" * 100)
    head, body = connection.response()
    assert head.startswith(b"HTTP/1.1 413 ")
    assert b"Connection: close" in head
    assert body == TOO_LARGE
    assert connection.transport.disconnecting  # Twisted reads no more of the socket
    connection.server.create_application.assert_not_called()


def test_a_client_expecting_100_continue_gets_only_the_413(connection):
    connection.send(post_head(f"Content-Length: {LIMIT + 1}", "Expect: 100-continue"))
    head, body = connection.response()  # json.loads fails on anything after the body
    assert head.startswith(b"HTTP/1.1 413 ")
    assert body == TOO_LARGE


def test_a_chunked_body_is_refused_once_its_chunks_pass_the_limit(connection):
    connection.send(post_head("Transfer-Encoding: chunked"))
    connection.send(chunk(b"x" * (LIMIT - 10)))
    assert connection.transport.value() == b""  # under the limit: still reading
    # The chunk that passes the limit, and the end of the body in the same read.
    connection.send(chunk(b"x" * 20) + chunk(b"y" * 5) + b"0\r\n\r\n")
    head, body = connection.response()
    assert head.startswith(b"HTTP/1.1 413 ")
    assert body == TOO_LARGE
    assert connection.transport.disconnecting
    connection.server.create_application.assert_not_called()


def test_a_body_within_the_limit_is_read_until_it_is_complete(connection):
    connection.send(post_head(f"Content-Length: {LIMIT}") + b"x" * (LIMIT - 1))
    assert connection.transport.value() == b""
    assert not connection.transport.disconnecting


# -- the ASGI handler (config/handlers.py) ----------------------------------------------------


class Exchange:
    """One HTTP request to the ASGI handler: chunks offered, messages sent back."""

    def __init__(self, headers: list[tuple[bytes, bytes]], chunks: Iterator[bytes]) -> None:
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",  # a body on a route without CSRF: only its size matters here
            "scheme": "http",
            "path": "/healthz",
            "raw_path": b"/healthz",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"testserver"), *headers],
            "client": ("127.0.0.1", 5000),
            "server": ("testserver", 80),
        }
        self.chunks: Iterator[bytes] | None = chunks
        self.read = 0
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if self.chunks is None:  # the body has ended: the client waits for the response
            await asyncio.Event().wait()
        body = next(self.chunks, None)
        if body is None:
            self.chunks = None
            return {"type": "http.request", "body": b"", "more_body": False}
        self.read += len(body)
        return {"type": "http.request", "body": body, "more_body": True}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def run(self) -> tuple[int, bytes]:
        async_to_sync(django_asgi_app)(self.scope, self.receive, self.send)
        start, *bodies = self.sent
        return start["status"], b"".join(message.get("body", b"") for message in bodies)


def endless(size: int) -> Iterator[bytes]:
    while True:
        yield b"x" * size


def test_the_handler_refuses_a_declared_length_over_the_limit_without_reading():
    exchange = Exchange([(b"content-length", b"150000000")], endless(100))
    status, body = exchange.run()
    assert (status, json.loads(body)) == (413, TOO_LARGE)
    assert exchange.read == 0


def test_the_handler_stops_reading_a_body_once_it_passes_the_limit():
    exchange = Exchange([], endless(100))  # chunked: no Content-Length
    status, body = exchange.run()
    assert (status, json.loads(body)) == (413, TOO_LARGE)
    assert exchange.read == LIMIT + 100


@pytest.mark.django_db
def test_the_handler_serves_a_body_within_the_limit():
    exchange = Exchange([(b"content-length", b"1000")], iter([b"x" * 600, b"x" * 400]))
    status, _ = exchange.run()
    assert status == 200
    assert exchange.read == LIMIT


# -- Django's own check, inside the API (config/api.py) --------------------------------------


@pytest.mark.django_db
def test_djangos_request_data_too_big_is_a_413_in_the_error_shape(client_for, alice, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100  # the test client bypasses the ASGI handler
    response = client_for(alice).post("/api/workspaces/", {"name": "x" * 200}, format="json")
    assert response.status_code == 413
    assert response.json() == TOO_LARGE
