"""The per-user websocket quota: open sockets and connects, with stale entries ignored.

These run the rules on the Django cache (unit tests); tests/integration/test_security_access.py
runs them in the real Redis, across Daphne processes.
"""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from rest_framework.authtoken.models import Token

from config.asgi import application
from workbench import socket_quota
from workbench.socket_quota import Admission, CacheBackend, Limits, SocketLedger, parse_rate

TIMEOUT = 5


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The quota's clock, moved by hand."""
    clock = Clock()
    monkeypatch.setattr(socket_quota.time, "time", clock)
    return clock


def limits(**overrides: Any) -> Limits:
    values = {"max_sockets": 2, "stale_seconds": 90.0, "connects": 0, "window": 60.0}
    return Limits(**{**values, **overrides})


def admit(backend: CacheBackend, socket_id: str, user_id: int = 1, **overrides: Any) -> Admission:
    return async_to_sync(backend.admit)(user_id, socket_id, limits(**overrides))


@pytest.mark.parametrize(
    ("rate", "parsed"),
    [("60/min", (60, 60.0)), ("5/s", (5, 1.0)), ("100/hour", (100, 3600.0)), (None, (0, 1.0))],
)
def test_it_reads_drf_rates(rate, parsed):
    assert parse_rate(rate) == parsed


def test_a_user_holds_at_most_the_cap_and_a_closed_socket_frees_its_place(clock):
    backend = CacheBackend()
    assert admit(backend, "a") is Admission.ADMITTED
    assert admit(backend, "b") is Admission.ADMITTED
    assert admit(backend, "c") is Admission.TOO_MANY_SOCKETS
    assert admit(backend, "x", user_id=2) is Admission.ADMITTED  # per user
    async_to_sync(backend.release)(1, "a")
    assert admit(backend, "c") is Admission.ADMITTED


def test_sockets_nobody_vouches_for_stop_counting_after_the_stale_bound(clock):
    backend = CacheBackend()
    assert admit(backend, "a") is Admission.ADMITTED
    assert admit(backend, "b") is Admission.ADMITTED
    clock.now += 60
    async_to_sync(backend.refresh)([(1, "b")], limits())  # b's process is alive; a's died
    clock.now += 45  # a is 105 s old, b 45 s
    assert admit(backend, "c") is Admission.ADMITTED
    assert admit(backend, "d") is Admission.TOO_MANY_SOCKETS


def test_connects_beyond_the_rate_are_refused_until_the_window_moves_on(clock):
    backend = CacheBackend()
    for n in range(3):
        assert admit(backend, f"s{n}", max_sockets=0, connects=3) is Admission.ADMITTED
        clock.now += 1
    assert admit(backend, "s3", max_sockets=0, connects=3) is Admission.TOO_MANY_CONNECTS
    clock.now += 58  # the first connect leaves the 60 s window
    assert admit(backend, "s4", max_sockets=0, connects=3) is Admission.ADMITTED


def test_an_unreachable_store_admits_the_socket():
    class Down:
        async def admit(self, *args: Any) -> Admission:
            raise ConnectionError("redis is down")

    async def scenario() -> Admission:
        return await SocketLedger(Down()).admit(1, "a")  # type: ignore[arg-type]

    assert async_to_sync(scenario)() is Admission.ADMITTED


# -- on the consumer ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_socket_past_the_cap_is_closed_with_4429_before_any_frame(workspace, alice, settings):
    settings.WORKBENCH_MAX_SOCKETS_PER_USER = 2
    key = Token.objects.create(user=alice).key
    path = f"/ws/workspaces/{workspace.pk}/?token={key}"

    async def opened() -> WebsocketCommunicator:
        ws = WebsocketCommunicator(application, path)
        connected, _ = await ws.connect(timeout=TIMEOUT)
        assert connected
        return ws

    async def scenario() -> None:
        first, second = await opened(), await opened()
        for ws in (first, second):
            assert (await ws.receive_json_from(timeout=TIMEOUT))["type"] == "snapshot"
        refused = await opened()
        assert await refused.receive_output(timeout=TIMEOUT) == {
            "type": "websocket.close",
            "code": 4429,
        }
        await first.disconnect()
        again = await opened()  # the closed socket's place is free
        assert (await again.receive_json_from(timeout=TIMEOUT))["type"] == "snapshot"
        for ws in (second, again):
            await ws.disconnect()

    async_to_sync(scenario)()
