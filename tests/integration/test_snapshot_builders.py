"""Snapshots and resumes are built in processes of their own (workbench/snapshots.py): a
Daphne spawns its builders, is ready only once they are, replaces one that dies (at a build
or at a readiness check), and its builders end when it is killed outright."""

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


def builders_readiness(daphne) -> tuple[int, str]:
    """/readyz's status code and its word on the builders."""
    response = httpx.get(f"{daphne.url}/readyz", timeout=30)
    return response.status_code, response.json()["checks"]["builders"]


def test_a_daphne_builds_snapshots_in_builders_it_replaces_and_takes_down_with_it(
    make_daphne_server,
):
    daphne = make_daphne_server()  # started: /readyz has said its builders are "ok"
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

    # Killed with no build to notice: readiness does, and a load balancer holds sockets off
    # until their replacements have started.
    second = wait_until(
        lambda: len(builders_of(daphne.pid)) == 2 and builders_of(daphne.pid),
        message=lambda: f"Daphne has {builders_of(daphne.pid)}, not two builders",
    )
    for pid in second:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not any(alive(pid) for pid in second), message="builders still alive")
    assert builders_readiness(daphne) == (503, "starting")
    wait_until(lambda: builders_readiness(daphne)[1] == "ok", timeout=60, message="not ready")
    third = builders_of(daphne.pid)
    assert len(third) == 2 and not set(third) & set(second)
    assert asyncio.run(first_frame(url, token))["type"] == "snapshot"

    daphne.kill(group=False)  # Daphne alone, outright: nothing of it can stop its builders
    wait_until(
        lambda: not any(alive(pid) for pid in third),
        timeout=15,
        message=lambda: f"builders {third} outlived their Daphne",
    )
