"""The per-process fan-out hub: each socket gets its workspace's events in seq order (a gap
filled from the event log), and a socket holds events until its snapshot is out."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer

from core.events import group_message
from core.models import Event, Workspace
from core.publish import GroupMessage, group_name
from tests.factories import WorkspaceFactory
from workbench import fanout
from workbench.consumers import WorkspaceConsumer
from workbench.fanout import WorkspaceHub

TIMEOUT = 5
LONG_WAIT_MS = 60_000  # a gap never times out within a test: only live events fill it
SHORT_WAIT_MS = 20


class Socket:
    def __init__(self, user_id: int = 1, fail: bool = False) -> None:
        self.user_id = user_id
        self.frames: list[str] = []
        self.fail = fail
        self.closed = False

    async def deliver(self, text: str) -> None:
        if self.fail:
            raise ConnectionError("gone")
        self.frames.append(text)

    async def revoked(self) -> None:
        self.closed = True

    def seqs(self) -> list[int]:
        return [json.loads(text)["seq"] for text in self.frames]

    def sources(self) -> list[str]:
        """Where each frame came from: "live", "log", or "private" (another member's)."""
        frames = [json.loads(text) for text in self.frames]
        return [f["data"].get("from", "private") for f in frames]


def event(
    workspace: int, seq: int, *, audience: list[int] | None = None, source: str = "live"
) -> GroupMessage:
    return group_message(workspace, seq, "tab.updated", {"from": source}, audience)


def log(workspace: Workspace, *seqs: int, audience: list[int] | None = None) -> None:
    """Event rows, as committed after the hub's join (its baseline is the workspace's
    event_seq, left as it was)."""
    for seq in seqs:
        Event.objects.create(
            workspace=workspace,
            seq=seq,
            name="tab.updated",
            data={"from": "log"},
            audience=audience,
        )


async def until(condition, timeout: float = TIMEOUT) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def send(layer: InMemoryChannelLayer, workspace: int, *seqs: int, **kwargs: Any) -> None:
    for seq in seqs:
        await layer.group_send(group_name(workspace), dict(event(workspace, seq, **kwargs)))


@pytest.fixture
def gap_wait(settings):
    """Set how long a hub made afterwards holds an event waiting for an earlier one."""

    def set_ms(ms: float) -> None:
        settings.WORKBENCH_STREAM_GAP_WAIT_MS = ms

    set_ms(LONG_WAIT_MS)
    return set_ms


pytestmark = pytest.mark.django_db(transaction=True)  # the hub reads on its own threads


def test_each_event_reaches_every_socket_of_its_workspace_once_in_order(gap_wait):
    one, two = WorkspaceFactory(), WorkspaceFactory()

    async def scenario() -> None:
        layer = InMemoryChannelLayer()
        hub = WorkspaceHub(layer)
        a, b, elsewhere = Socket(), Socket(), Socket()
        await hub.join(one.pk, a)
        await hub.join(one.pk, b)
        await hub.join(two.pk, elsewhere)
        await send(layer, one.pk, 1, 2, 3)
        await send(layer, two.pk, 1)
        await until(lambda: len(b.frames) == 3 and elsewhere.frames)
        assert a.frames == b.frames
        assert a.seqs() == [1, 2, 3]
        assert elsewhere.seqs() == [1]
        # One subscription per workspace, whatever the number of sockets.
        assert list(layer.groups[group_name(one.pk)]) == [hub.channel]
        hub.stop()

    async_to_sync(scenario)()


def test_the_last_socket_to_leave_drops_the_subscription_and_a_broken_one_blocks_nobody(gap_wait):
    workspace = WorkspaceFactory()

    async def scenario() -> None:
        layer = InMemoryChannelLayer()
        hub = WorkspaceHub(layer)
        broken, fine = Socket(fail=True), Socket()
        await hub.join(workspace.pk, broken)
        await hub.join(workspace.pk, fine)
        await send(layer, workspace.pk, 1)
        await until(lambda: fine.seqs() == [1])
        await hub.leave(workspace.pk, broken)
        assert hub.channel in layer.groups[group_name(workspace.pk)]
        await hub.leave(workspace.pk, fine)
        assert hub.channel not in layer.groups.get(group_name(workspace.pk), {})
        assert hub.members == {} and hub.streams == {}
        await hub.leave(workspace.pk, fine)  # twice is harmless
        hub.stop()

    async_to_sync(scenario)()


def test_events_arriving_out_of_order_reach_each_socket_in_seq_order(gap_wait):
    workspace = WorkspaceFactory()

    async def scenario() -> None:
        layer = InMemoryChannelLayer()
        hub = WorkspaceHub(layer)
        a, b = Socket(), Socket()
        await hub.join(workspace.pk, a)
        await hub.join(workspace.pk, b)
        await send(layer, workspace.pk, 3, 2)
        await until(lambda: len(hub.streams[workspace.pk].held) == 2)
        assert a.frames == []  # held for seq 1
        await send(layer, workspace.pk, 1, 4)
        await until(lambda: len(a.frames) == 4 and len(b.frames) == 4)
        assert a.seqs() == b.seqs() == [1, 2, 3, 4]
        assert a.sources() == ["live"] * 4  # the log was not needed
        hub.stop()

    async_to_sync(scenario)()


def test_a_gap_still_open_after_the_wait_is_filled_from_the_log(gap_wait):
    gap_wait(SHORT_WAIT_MS)
    workspace = WorkspaceFactory()
    log(workspace, 1, 2, 3)

    async def scenario() -> None:
        layer = InMemoryChannelLayer()
        hub = WorkspaceHub(layer)
        socket = Socket()
        await hub.join(workspace.pk, socket)
        await send(layer, workspace.pk, 3)  # 1 and 2 were lost on the way
        await until(lambda: len(socket.frames) == 3)
        assert socket.seqs() == [1, 2, 3]
        assert socket.sources()[:2] == ["log", "log"]
        await send(layer, workspace.pk, 2, 4)  # 2 turns up late: already sent from the log
        await until(lambda: len(socket.frames) == 4)
        assert socket.seqs() == [1, 2, 3, 4]
        hub.stop()

    async_to_sync(scenario)()


def test_duplicates_and_events_older_than_the_baseline_are_dropped(gap_wait):
    workspace = WorkspaceFactory(event_seq=5)  # what a socket's snapshot already covers

    async def scenario() -> None:
        layer = InMemoryChannelLayer()
        hub = WorkspaceHub(layer)
        socket = Socket()
        await hub.join(workspace.pk, socket)
        await send(layer, workspace.pk, 4, 5, 6, 6, 8, 8, 5, 7, 6, 9)
        await until(lambda: len(socket.frames) >= 4)
        await send(layer, workspace.pk, 10)
        await until(lambda: len(socket.frames) >= 5)
        assert socket.seqs() == [6, 7, 8, 9, 10]
        hub.stop()

    async_to_sync(scenario)()


def test_past_the_cap_the_hub_fills_from_the_log_at_once_without_growing(gap_wait):
    workspace = WorkspaceFactory()
    log(workspace, *range(1, 21))

    async def scenario() -> None:
        layer = InMemoryChannelLayer()
        hub = WorkspaceHub(layer)
        hub.MAX_HELD = 3
        socket = Socket()
        await hub.join(workspace.pk, socket)
        stream = hub.streams[workspace.pk]
        most_held = 0

        def delivered() -> bool:
            nonlocal most_held
            most_held = max(most_held, len(stream.held))
            return len(socket.frames) == 20

        await send(layer, workspace.pk, *range(2, 21))  # 1 is missing; the wait is 60 s
        await until(delivered)
        assert socket.seqs() == list(range(1, 21))
        assert most_held <= 3
        assert stream.held == {}
        hub.stop()

    async_to_sync(scenario)()


def test_what_the_log_no_longer_has_is_skipped_and_the_held_events_still_go_out(gap_wait):
    gap_wait(SHORT_WAIT_MS)
    workspace = WorkspaceFactory()
    log(workspace, 3, 4)  # 1 and 2 were pruned

    async def scenario() -> None:
        layer = InMemoryChannelLayer()
        hub = WorkspaceHub(layer)
        socket = Socket()
        await hub.join(workspace.pk, socket)
        await send(layer, workspace.pk, 5, 6)
        await until(lambda: len(socket.frames) == 4)
        # The client sees the gap before 3 and resumes (or takes a snapshot), as before.
        assert socket.seqs() == [3, 4, 5, 6]
        assert socket.sources() == ["log", "log", "live", "live"]
        hub.stop()

    async_to_sync(scenario)()


def test_events_filled_from_the_log_keep_private_frames_and_revocations(gap_wait):
    gap_wait(SHORT_WAIT_MS)
    workspace = WorkspaceFactory()
    alice, bob = 10, 11
    log(workspace, 1, audience=[alice])
    log(workspace, 2)
    Event.objects.create(
        workspace=workspace, seq=3, name="member.removed", data={"user": bob, "from": "log"}
    )

    async def scenario() -> None:
        layer = InMemoryChannelLayer()
        hub = WorkspaceHub(layer)
        a, b = Socket(user_id=alice), Socket(user_id=bob)
        await hub.join(workspace.pk, a)
        await hub.join(workspace.pk, b)
        await send(layer, workspace.pk, 4, audience=[bob])
        await until(lambda: len(a.frames) == 4 and len(b.frames) == 4)
        assert a.seqs() == b.seqs() == [1, 2, 3, 4]
        assert a.sources() == ["log", "log", "log", "private"]
        assert b.sources() == ["private", "log", "log", "live"]
        private = json.loads(b.frames[0])
        assert private == {"type": "event", "seq": 1, "event": "private", "data": {}}
        assert b.closed and not a.closed  # bob's removal, read from the log, closed his socket
        hub.stop()

    async_to_sync(scenario)()


def test_an_event_broadcast_while_the_baseline_is_read_is_kept(gap_wait, monkeypatch):
    workspace = WorkspaceFactory()

    async def scenario() -> None:
        layer = InMemoryChannelLayer()
        hub = WorkspaceHub(layer)
        read = fanout._current_seq

        async def current_seq(workspace_id: int) -> int:
            seq = await read(workspace_id)
            await send(layer, workspace_id, seq + 1)  # committed just after the read
            await until(lambda: hub.streams[workspace_id].held)
            return seq

        monkeypatch.setattr(fanout, "_current_seq", current_seq)
        socket = Socket()
        await hub.join(workspace.pk, socket)
        await until(lambda: socket.frames)
        assert socket.seqs() == [1]
        hub.stop()

    async_to_sync(scenario)()


def test_when_the_log_cannot_be_read_the_held_events_still_go_out(gap_wait, monkeypatch):
    gap_wait(SHORT_WAIT_MS)
    workspace = WorkspaceFactory()

    async def failing(workspace_id: int, first: int, last: int) -> list[GroupMessage]:
        raise ConnectionError("database down")

    monkeypatch.setattr(fanout, "_log_messages", failing)

    async def scenario() -> None:
        layer = InMemoryChannelLayer()
        hub = WorkspaceHub(layer)
        socket = Socket()
        await hub.join(workspace.pk, socket)
        await send(layer, workspace.pk, 2, 3)
        await until(lambda: len(socket.frames) == 2)
        assert socket.seqs() == [2, 3]  # the client sees the gap and resumes
        await send(layer, workspace.pk, 1, 4)
        await until(lambda: len(socket.frames) == 3)
        assert socket.seqs() == [2, 3, 4]
        hub.stop()

    async_to_sync(scenario)()


def test_a_slow_log_read_for_one_workspace_holds_up_no_other(gap_wait, monkeypatch):
    gap_wait(SHORT_WAIT_MS)
    slow, other = WorkspaceFactory(), WorkspaceFactory()
    reading, release = asyncio.Event(), asyncio.Event()
    read = fanout._log_messages

    async def log_messages(workspace_id: int, first: int, last: int) -> list[GroupMessage]:
        if workspace_id == slow.pk:
            reading.set()
            await release.wait()
        return await read(workspace_id, first, last)

    monkeypatch.setattr(fanout, "_log_messages", log_messages)

    async def scenario() -> None:
        layer = InMemoryChannelLayer()
        hub = WorkspaceHub(layer)
        waiting, live = Socket(), Socket()
        await hub.join(slow.pk, waiting)
        await hub.join(other.pk, live)
        await send(layer, slow.pk, 2)  # 1 is not in the log: a fill that skips it
        await until(reading.is_set)
        await send(layer, other.pk, 1, 2, 3)
        await until(lambda: len(live.frames) == 3)
        assert waiting.frames == []  # still reading its log
        release.set()
        await until(lambda: waiting.seqs() == [2])
        hub.stop()

    async_to_sync(scenario)()


def test_a_socket_holds_events_until_its_snapshot_is_sent_then_keeps_their_order():
    async def scenario() -> None:
        consumer = WorkspaceConsumer()
        sent: list[str] = []

        async def base_send(message: dict[str, Any]) -> None:
            sent.append(message["text"])
            if message["text"] == "snapshot":
                await consumer.deliver("2")  # arrives while the held ones go out

        consumer.base_send = base_send
        consumer.held = []
        await consumer.deliver("1")
        assert sent == []  # held: the snapshot is not out yet
        await consumer.base_send({"type": "websocket.send", "text": "snapshot"})
        await consumer._go_live()
        await consumer.deliver("3")
        assert sent == ["snapshot", "1", "2", "3"]
        assert consumer.held is None

    async_to_sync(scenario)()


def test_a_live_event_never_overtakes_the_answer_to_a_resume(monkeypatch):
    async def scenario() -> None:
        consumer = WorkspaceConsumer()
        consumer.workspace_id = 1
        consumer.user_id = 1
        sent: list[str] = []

        async def base_send(message: dict[str, Any]) -> None:
            sent.append(message["text"])

        async def events_after(*, workspace_id: int, seq: int, user_id: int) -> list[str]:
            await consumer.deliver('"live 7"')  # published while the answer is read
            return [json.dumps({"type": "event", "seq": s}) for s in (5, 6)]

        monkeypatch.setattr("workbench.snapshots.events_after_texts", events_after)
        consumer.base_send = base_send
        await consumer._resume({"seq": 4})
        assert [text[:22] for text in sent] == [
            '{"type": "event", "seq',
            '{"type": "event", "seq',
            '"live 7"',
        ]
        assert '"seq": 5' in sent[0] and '"seq": 6' in sent[1]
        assert consumer.held is None  # live again

    async_to_sync(scenario)()
