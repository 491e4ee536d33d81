"""The web tier `make run` starts (config/web.py): several Daphne processes on one port, the
sockets spread over them, an event reaching every socket whichever process holds it, and
the tier ending as one when any of its processes dies."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from tests.helpers import wait_until
from tests.integration.services import LOOPBACK, DaphneServer


class WebTier(DaphneServer):
    name = "web-tier"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "config.web", "--processes", "2",
            "-b", LOOPBACK, "-p", str(self.port), "config.asgi:application",
        ]  # fmt: skip

    def daphnes(self) -> list[int]:
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        return [int(pid) for pid in children]


def sockets_of(pid: int) -> int:
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # closed while we looked
            count += str(fd.readlink()).startswith("socket:")
    return count


def test_sockets_spread_over_the_daphnes_events_reach_all_and_the_tier_dies_as_one(
    child_env, integration_run, member
):
    tier = WebTier(log_dir=integration_run.log_dir, env=child_env())
    integration_run.add(tier)
    tier.start()
    try:
        daphnes = tier.daphnes()
        assert len(daphnes) == 2
        before = {pid: sockets_of(pid) for pid in daphnes}
        headers = {"Authorization": f"Token {member['token']}"}
        api = httpx.Client(base_url=tier.url, headers=headers, timeout=30)
        task = api.post(f"/api/workspaces/{member['workspace']}/tasks/", json={"title": "a"})
        assert task.status_code == 201
        url = f"{tier.ws_url}/ws/workspaces/{member['workspace']}/"

        async def scenario() -> None:
            sockets = [await connect(url, additional_headers=headers) for _ in range(20)]
            try:
                for ws in sockets:
                    assert json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] == "snapshot"
                # Both processes hold some of the 20 sockets.
                gained = [sockets_of(pid) - before[pid] for pid in daphnes]
                assert all(n >= 3 for n in gained), gained
                renamed = api.patch(f"/api/tasks/{task.json()['id']}/", json={"title": "b"})
                assert renamed.status_code == 200
                for ws in sockets:  # whichever Daphne holds it, the event arrives
                    while True:
                        frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
                        if frame.get("event") == "task.updated" and frame["data"]["title"] == "b":
                            break
            finally:
                await asyncio.gather(*(ws.close() for ws in sockets))

        asyncio.run(scenario())
        os.kill(daphnes[0], signal.SIGKILL)
        wait_until(lambda: not tier.alive, timeout=30, message="the tier outlived a Daphne")
        wait_until(
            lambda: (
                not Path(f"/proc/{daphnes[1]}").exists()
                or "zombie" in Path(f"/proc/{daphnes[1]}/status").read_text()
            ),
            timeout=30,
            message="the other Daphne outlived the tier",
        )
        assert tier.returncode != 0
    finally:
        tier.stop()
