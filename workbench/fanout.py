"""One channel-layer subscription per workspace per process, fanned out to its sockets.

Channels' usual way, a group membership per socket, has the layer queue every event once
per socket and wake each consumer's task to receive, dispatch and send it: with 1,000
sockets on one workspace that was most of Daphne's CPU per event (docs/benchmarks.md).
Here each process joins a workspace's group once, with one hub channel, and writes the
event frame (JSON encoded once, by the publisher) straight to each local socket in turn.

Ordering: one hub task receives and sends, so every socket sees events in publish order.
A socket joins before its snapshot is read (so nothing committed after it is missed) and
holds what arrives meanwhile until the snapshot is sent; clients drop what the snapshot
already covers (docs/websocket.md).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any, Protocol

from core.publish import group_name

logger = logging.getLogger(__name__)


class Subscriber(Protocol):
    async def deliver(self, text: str) -> None: ...


class WorkspaceHub:
    """The process's (event loop's) members per workspace, and the task that feeds them."""

    RETRY_SECONDS = 0.5

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.members: dict[int, set[Subscriber]] = {}
        self.channel: str | None = None
        self.task: asyncio.Task[None] | None = None
        self.lock = asyncio.Lock()

    async def join(self, workspace_id: int, subscriber: Subscriber) -> None:
        """From now on, `subscriber` gets every event of the workspace published after this
        returns (and possibly a few before)."""
        async with self.lock:
            if self.channel is None:
                self.channel = await self.layer.new_channel("workbench-hub.")
                self.task = asyncio.get_running_loop().create_task(self._run(self.channel))
            members = self.members.get(workspace_id)
            if members is None:
                await self.layer.group_add(group_name(workspace_id), self.channel)
                members = self.members[workspace_id] = set()
            members.add(subscriber)

    async def leave(self, workspace_id: int, subscriber: Subscriber) -> None:
        async with self.lock:
            members = self.members.get(workspace_id)
            if members is None or subscriber not in members:
                return
            members.discard(subscriber)
            if not members:
                del self.members[workspace_id]
                assert self.channel is not None
                await self.layer.group_discard(group_name(workspace_id), self.channel)

    async def _run(self, channel: str) -> None:
        while True:
            try:
                message = await self.layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                # The layer reconnects on its own (config.channel_layer); events lost
                # meanwhile show up to clients as a gap, which they resume.
                logger.warning("the fan-out hub could not receive; retrying", exc_info=True)
                await asyncio.sleep(self.RETRY_SECONDS)
                continue
            if message.get("type") != "workbench.event":
                continue
            # A copy: a socket that leaves during the sends changes the set.
            for subscriber in tuple(self.members.get(message["workspace"], ())):
                try:
                    await subscriber.deliver(message["text"])
                except Exception:
                    # One broken socket must not keep the event from the others.
                    logger.warning("delivering an event to a socket failed", exc_info=True)


# One hub per event loop: Daphne has one; tests may run several in turn.
_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, WorkspaceHub] = (
    weakref.WeakKeyDictionary()
)


def hub_for(layer: Any) -> WorkspaceHub:
    """The running loop's hub on `layer` (made on first use)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None or hub.layer is not layer:
        if hub is not None and hub.task is not None:
            hub.task.cancel()
        hub = _hubs[loop] = WorkspaceHub(layer)
    return hub
