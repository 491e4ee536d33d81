"""Snapshot builds take turns per user: one user's many connects queue behind each other,
never in front of another user's."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from asgiref.sync import async_to_sync

from tests.factories import TaskFactory
from workbench import snapshots
from workbench.snapshots import KeyedGate


async def until(condition, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def test_a_key_holds_at_most_its_limit_and_other_keys_pass_meanwhile():
    async def scenario() -> None:
        gate = KeyedGate(limit=1)
        release = asyncio.Event()
        order: list[str] = []

        async def build(key: str, name: str) -> None:
            async with gate.hold(key):
                order.append(name)
                if name == "flood-0":
                    await release.wait()

        flood = [asyncio.create_task(build("attacker", f"flood-{n}")) for n in range(50)]
        await until(lambda: order == ["flood-0"])
        victim = asyncio.create_task(build("victim", "victim"))
        await victim  # done while the attacker's first build still holds its turn
        assert order == ["flood-0", "victim"]
        release.set()
        await asyncio.gather(*flood)
        assert order[2:] == [f"flood-{n}" for n in range(1, 50)]  # in arrival order
        assert gate.lines == {}  # nobody waits: nothing is kept

    async_to_sync(scenario)()


def test_a_limit_above_one_lets_that_many_in_at_once():
    async def scenario() -> None:
        gate = KeyedGate(limit=2)
        inside = 0
        most = 0
        release = asyncio.Event()

        async def build() -> None:
            nonlocal inside, most
            async with gate.hold("user"):
                inside += 1
                most = max(most, inside)
                await release.wait()
                inside -= 1

        tasks = [asyncio.create_task(build()) for _ in range(5)]
        await until(lambda: inside == 2)
        release.set()
        await asyncio.gather(*tasks)
        assert most == 2

    async_to_sync(scenario)()


@pytest.mark.django_db(transaction=True)
def test_the_snapshot_is_built_and_encoded_off_the_event_loop(workspace, monkeypatch):
    TaskFactory(workspace=workspace, title="seen")
    threads: list[str] = []
    original = snapshots._snapshot_text

    def spy(workspace_id: int, user_id: int) -> str:
        threads.append(threading.current_thread().name)
        return original(workspace_id, user_id)

    owner = workspace.memberships.get(role="owner").user

    async def scenario() -> str:
        return await snapshots.snapshot_text(workspace_id=workspace.pk, user_id=owner.pk)

    monkeypatch.setattr(snapshots, "_snapshot_text", spy)
    text = async_to_sync(scenario)()
    frame = json.loads(text)
    assert frame["type"] == "snapshot"
    assert [task["title"] for task in frame["tasks"]] == ["seen"]
    assert threads and threads[0].startswith("snapshot")
