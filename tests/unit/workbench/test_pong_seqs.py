"""The seq a pong carries (workbench.fanout.PongSeqs): read from the database, shared by the
pings of a workspace, never older than its max age."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from rest_framework.authtoken.models import Token

from config.asgi import application
from core.events import record_event
from core.locks import workspace_transaction
from workbench import fanout
from workbench.fanout import PongSeqs

TIMEOUT = 5
MAX_AGE = 0.5


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Reads:
    """A seq reader that counts its calls and answers `seq`, or waits for `release`."""

    def __init__(self, seq: int = 7) -> None:
        self.seq = seq
        self.calls = 0
        self.release: asyncio.Event | None = None
        self.error: Exception | None = None

    async def __call__(self, workspace_id: int) -> int:
        self.calls += 1
        if self.release is not None:
            await self.release.wait()
        if self.error is not None:
            raise self.error
        return self.seq


def test_many_concurrent_pings_of_a_workspace_share_one_read():
    reads, clock = Reads(), Clock()

    async def scenario() -> None:
        seqs = PongSeqs(MAX_AGE, reads, clock)
        reads.release = asyncio.Event()
        pings = [asyncio.create_task(seqs.current(1)) for _ in range(50)]
        await asyncio.sleep(0)
        reads.release.set()
        assert await asyncio.gather(*pings) == [7] * 50
        assert reads.calls == 1
        clock.now += MAX_AGE / 4  # later pings within the window: no read at all
        assert [await seqs.current(1) for _ in range(20)] == [7] * 20
        assert reads.calls == 1

    async_to_sync(scenario)()


def test_each_workspace_has_its_own_read():
    reads, clock = Reads(), Clock()

    async def scenario() -> None:
        seqs = PongSeqs(MAX_AGE, reads, clock)
        await asyncio.gather(*(seqs.current(workspace) for workspace in (1, 2, 3, 1, 2, 3)))
        assert reads.calls == 3

    async_to_sync(scenario)()


def test_a_value_older_than_the_max_age_is_never_answered():
    reads, clock = Reads(), Clock()

    async def scenario() -> None:
        seqs = PongSeqs(MAX_AGE, reads, clock)
        assert await seqs.current(1) == 7
        reads.seq = 8  # committed after the first read
        clock.now += MAX_AGE + 0.01
        assert await seqs.current(1) == 8  # waited for a fresh read
        assert reads.calls == 2

    async_to_sync(scenario)()


def test_past_half_the_max_age_a_ping_answers_at_once_and_reads_ahead():
    reads, clock = Reads(), Clock()

    async def scenario() -> None:
        seqs = PongSeqs(MAX_AGE, reads, clock)
        assert await seqs.current(1) == 7
        reads.seq = 8
        reads.release = asyncio.Event()
        clock.now += MAX_AGE * 0.75
        assert await seqs.current(1) == 7  # the value it has, still within the max age
        await asyncio.sleep(0)  # the read ahead starts
        assert await seqs.current(1) == 7  # it is under way: not a second one
        assert reads.calls == 2
        reads.release.set()
        for _ in range(10):
            await asyncio.sleep(0)
        assert await seqs.current(1) == 8  # the read ahead's value, without waiting
        assert reads.calls == 2

    async_to_sync(scenario)()


def test_a_failed_read_raises_in_its_pings_and_the_next_ping_reads_again():
    reads, clock = Reads(), Clock()

    async def scenario() -> None:
        seqs = PongSeqs(MAX_AGE, reads, clock)
        reads.error = ConnectionError("database down")
        results = await asyncio.gather(seqs.current(1), seqs.current(1), return_exceptions=True)
        assert [type(r) for r in results] == [ConnectionError, ConnectionError]
        assert reads.calls == 1
        reads.error = None
        assert await seqs.current(1) == 7
        assert reads.calls == 2

    async_to_sync(scenario)()


def test_a_ping_cancelled_while_it_waits_leaves_the_read_to_the_others():
    reads, clock = Reads(), Clock()

    async def scenario() -> None:
        seqs = PongSeqs(MAX_AGE, reads, clock)
        reads.release = asyncio.Event()
        first = asyncio.create_task(seqs.current(1))
        second = asyncio.create_task(seqs.current(1))
        await asyncio.sleep(0)
        first.cancel()  # its socket closed
        reads.release.set()
        assert await second == 7
        assert reads.calls == 1

    async_to_sync(scenario)()


# -- on the real consumer and database -----------------------------------------------------


def _commit_event(workspace_id: int) -> int:
    with workspace_transaction(workspace_id):
        return record_event(workspace_id, "workspace.updated", {})


async def _socket(workspace_id: int, key: str) -> WebsocketCommunicator:
    ws = WebsocketCommunicator(
        application,
        f"/ws/workspaces/{workspace_id}/",
        headers=[(b"authorization", f"Token {key}".encode())],
    )
    connected, _ = await ws.connect(timeout=TIMEOUT)
    assert connected
    assert (await ws.receive_json_from(timeout=TIMEOUT))["type"] == "snapshot"
    return ws


async def _pong(ws: WebsocketCommunicator) -> int:
    await ws.send_json_to({"type": "ping"})
    while True:  # events may come first
        frame = await ws.receive_json_from(timeout=TIMEOUT)
        if frame["type"] == "pong":
            return frame["seq"]


@pytest.mark.django_db(transaction=True)
def test_pings_on_many_sockets_of_a_workspace_cost_one_seq_query(workspace, alice, monkeypatch):
    key = Token.objects.get_or_create(user=alice)[0].key
    read = fanout._current_seq
    reads: list[int] = []
    clock = Clock()  # however slow the machine, every ping falls in one window
    monkeypatch.setattr(fanout, "PongSeqs", lambda max_age: PongSeqs(max_age, clock=clock))

    async def counted(workspace_id: int) -> int:
        reads.append(workspace_id)
        return await read(workspace_id)

    async def scenario() -> None:
        sockets = [await _socket(workspace.pk, key) for _ in range(5)]
        monkeypatch.setattr(fanout, "_current_seq", counted)  # after the hub's baseline read
        seq = await database_sync_to_async(_commit_event)(workspace.pk)
        assert await asyncio.gather(*(_pong(ws) for ws in sockets)) == [seq] * 5
        assert reads == [workspace.pk]
        for ws in sockets:
            await ws.disconnect()

    async_to_sync(scenario)()


@pytest.mark.django_db(transaction=True)
def test_a_pong_carries_an_event_committed_more_than_the_max_age_before_it(
    workspace, alice, monkeypatch
):
    key = Token.objects.get_or_create(user=alice)[0].key
    clock = Clock()
    monkeypatch.setattr(fanout, "PongSeqs", lambda max_age: PongSeqs(max_age, clock=clock))

    async def scenario() -> None:
        ws = await _socket(workspace.pk, key)
        before = await _pong(ws)
        # Committed with its broadcast lost: the hub never hears of it, the log has it.
        with monkeypatch.context() as patched:
            patched.setattr("core.events.publish_event", lambda *args, **kwargs: None)
            seq = await database_sync_to_async(_commit_event)(workspace.pk)
        assert seq == before + 1
        assert await _pong(ws) == before  # within the max age: the shared value
        clock.now += fanout.PONG_SEQ_MAX_AGE + 0.01
        assert await _pong(ws) == seq  # the client now sees it lost its last event
        await ws.disconnect()

    async_to_sync(scenario)()
