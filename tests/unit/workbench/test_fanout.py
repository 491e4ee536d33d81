"""The per-process fan-out hub, and a socket holding events until its snapshot is out."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer

from core.publish import group_name
from workbench.consumers import WorkspaceConsumer
from workbench.fanout import WorkspaceHub

TIMEOUT = 5


class Socket:
    def __init__(self, fail: bool = False) -> None:
        self.frames: list[str] = []
        self.fail = fail

    async def deliver(self, text: str) -> None:
        if self.fail:
            raise ConnectionError("gone")
        self.frames.append(text)


def event(workspace: int, seq: int) -> dict[str, Any]:
    return {"type": "workbench.event", "workspace": workspace, "seq": seq, "text": f"{seq}"}


async def until(condition, timeout: float = TIMEOUT) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def test_each_event_reaches_every_socket_of_its_workspace_once_in_order():
    async def scenario() -> None:
        layer = InMemoryChannelLayer()
        hub = WorkspaceHub(layer)
        a, b, elsewhere = Socket(), Socket(), Socket()
        await hub.join(1, a)
        await hub.join(1, b)
        await hub.join(2, elsewhere)
        for seq in (1, 2, 3):
            await layer.group_send(group_name(1), event(1, seq))
        await layer.group_send(group_name(2), event(2, 9))
        await until(lambda: len(b.frames) == 3 and elsewhere.frames)
        assert a.frames == b.frames == ["1", "2", "3"]
        assert elsewhere.frames == ["9"]
        # One subscription per workspace, whatever the number of sockets.
        assert list(layer.groups[group_name(1)]) == [hub.channel]
        hub.task.cancel()

    async_to_sync(scenario)()


def test_the_last_socket_to_leave_drops_the_subscription_and_a_broken_one_blocks_nobody():
    async def scenario() -> None:
        layer = InMemoryChannelLayer()
        hub = WorkspaceHub(layer)
        broken, fine = Socket(fail=True), Socket()
        await hub.join(1, broken)
        await hub.join(1, fine)
        await layer.group_send(group_name(1), event(1, 1))
        await until(lambda: fine.frames == ["1"])
        await hub.leave(1, broken)
        assert hub.channel in layer.groups[group_name(1)]
        await hub.leave(1, fine)
        assert hub.channel not in layer.groups.get(group_name(1), {})
        assert hub.members == {}
        await hub.leave(1, fine)  # twice is harmless
        hub.task.cancel()

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
