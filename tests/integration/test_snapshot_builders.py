"""Snapshots and resumes are built in processes of their own (workbench/snapshots.py): a
Daphne spawns its builders, replaces one that dies, and its builders end when it is killed
outright."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from pathlib import Path

import httpx
from rest_framework.authtoken.models import Token
from websockets.asyncio.client import connect

from core.models import Membership
from tests.factories import MembershipFactory, UserFactory, WorkspaceFactory
from tests.helpers import wait_until


def builders_of(pid: int) -> list[int]:
    """The multiprocessing children (spawned builders) of process `pid`."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            for child in (task / "children").read_text().split():
                with contextlib.suppress(FileNotFoundError):
                    if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                        found.append(int(child))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def first_frame(url: str, token: str) -> dict:
    headers = {"Authorization": f"Token {token}"}
    async with connect(url, additional_headers=headers, open_timeout=30) as ws:
        return json.loads(await asyncio.wait_for(ws.recv(), 60))


def test_a_daphne_builds_snapshots_in_builders_it_replaces_and_takes_down_with_it(
    make_daphne_server,
):
    daphne = make_daphne_server()
    user = UserFactory(username="builder")
    workspace = WorkspaceFactory(name="Built elsewhere")
    MembershipFactory(workspace=workspace, user=user, role=Membership.Role.OWNER)
    token = Token.objects.create(user=user).key
    url = f"{daphne.ws_url}/ws/workspaces/{workspace.pk}/"
    # Spawned at Daphne's start, before any socket needs one.
    first = wait_until(
        lambda: len(builders_of(daphne.pid)) == 2 and builders_of(daphne.pid),
        message=lambda: f"Daphne spawned {builders_of(daphne.pid)}, not two builders",
    )

    frame = asyncio.run(first_frame(url, token))
    assert frame["type"] == "snapshot" and frame["workspace"]["id"] == workspace.pk
    # A resume is read by a builder too: what the client missed, not a snapshot.
    created = httpx.post(
        f"{daphne.url}/api/workspaces/{workspace.pk}/tasks/",
        json={"title": "missed"},
        headers={"Authorization": f"Token {token}"},
        timeout=30,
    )
    assert created.status_code == 201
    missed = asyncio.run(first_frame(f"{url}?seq={frame['seq']}", token))
    assert (missed["type"], missed["seq"], missed["data"]["title"]) == (
        "event",
        frame["seq"] + 1,
        "missed",
    )

    for pid in first:  # as the kernel's OOM killer would
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not any(alive(pid) for pid in first), message="builders still alive")
    frame = asyncio.run(first_frame(url, token))
    assert frame["type"] == "snapshot"  # built by a fresh builder, not a 1011
    second = wait_until(lambda: builders_of(daphne.pid), message="no builder after the kill")
    assert not set(second) & set(first)

    daphne.kill(group=False)  # Daphne alone, outright: nothing of it can stop its builders
    wait_until(
        lambda: not any(alive(pid) for pid in second),
        timeout=15,
        message=lambda: f"builders {second} outlived their Daphne",
    )
