"""The broadcast of committed events: one publisher per process, the only module that sends
to the channel layer. A hint, not the truth: a lost broadcast shows up to clients as a gap
in `seq`, and they resume from the Event table (core.events)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from typing import Any, Literal, TypedDict

from asgiref.sync import async_to_sync
from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers

logger = logging.getLogger(__name__)


class GroupMessage(TypedDict):
    """What travels over the channel layer to each process's fan-out hub."""

    type: Literal["workbench.event"]
    workspace: int
    seq: int
    text: str  # the event frame as JSON, encoded once here rather than once per socket
    # The users the event is for (a member's private state), None for every member; the
    # others get a `private` frame in its place, so their seq stays gapless.
    audience: list[int] | None
    # A user whose sockets on the workspace close (4403) once this event is sent.
    revoke: int | None


def private_frame_text(seq: int) -> str:
    """What a member gets in place of another member's private event: only its seq."""
    return json.dumps({"type": "event", "seq": seq, "event": "private", "data": {}})


def text_for(message: GroupMessage, user_id: int) -> str:
    """The frame one member's socket receives for `message`."""
    audience = message["audience"]
    if audience is None or user_id in audience:
        return message["text"]
    return private_frame_text(message["seq"])


def group_name(workspace_id: int) -> str:
    # Channels group names: ASCII alphanumerics, '-', '_' and '.', under 100 characters.
    return f"workspace.{workspace_id}"


def publish(message: GroupMessage) -> None:
    """Send one committed event to its workspace's group; failures are logged, not raised."""
    try:
        _publisher().send(group_name(message["workspace"]), dict(message))
    except Exception:
        logger.warning(
            "publishing event %s#%s failed; clients will resume",
            message["workspace"],
            message["seq"],
            exc_info=True,
        )


class _LoopPublisher:
    """One event loop thread and one channel layer per process (Celery workers, Daphne).

    `async_to_sync` per event would build a new loop and Redis connection every time
    (milliseconds each, and "Event loop is closed" errors in workers); this keeps both.
    `send` only enqueues: one sender task on the loop publishes the queue in order, so a
    process's events stay in order on the wire without the caller (a request thread, a
    worker) waiting for Redis. Waiting took 0.1-1 ms per event, more when the process's
    threads compete for the GIL (docs/benchmarks.md).
    """

    MAX_QUEUED = 10_000  # a stuck layer must not grow memory forever; clients resume

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
        self.loop = asyncio.new_event_loop()
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(self.MAX_QUEUED)
        thread = threading.Thread(target=self.loop.run_forever, name="event-publisher", daemon=True)
        thread.start()
        asyncio.run_coroutine_threadsafe(self._sender(), self.loop)

    def send(self, group: str, message: dict[str, Any]) -> None:
        self.loop.call_soon_threadsafe(self._enqueue, group, message)

    def _enqueue(self, group: str, message: dict[str, Any]) -> None:
        try:
            self.queue.put_nowait((group, message))
        except asyncio.QueueFull:
            logger.warning("event %s#%s dropped: the publish queue is full", group, message["seq"])

    async def _sender(self) -> None:
        while True:
            group, message = await self.queue.get()
            try:
                await self.layer.group_send(group, message)
            except Exception:
                logger.warning(
                    "publishing event %s#%s failed; clients will resume",
                    group,
                    message["seq"],
                    exc_info=True,
                )


class _InProcessPublisher:
    """For the in-memory layer (unit tests): it lives on the consumers' own loop."""

    def send(self, group: str, message: dict[str, Any]) -> None:
        layer = channel_layers[DEFAULT_CHANNEL_LAYER]
        async_to_sync(layer.group_send)(group, message)


_lock = threading.Lock()
_current: _LoopPublisher | _InProcessPublisher | None = None


def _publisher() -> _LoopPublisher | _InProcessPublisher:
    global _current
    with _lock:
        # A forked Celery child inherits the parent's object but not its thread: make anew.
        if isinstance(_current, _LoopPublisher) and _current.pid != os.getpid():
            _current = None
        if _current is None:
            backend = channel_layers.configs[DEFAULT_CHANNEL_LAYER]["BACKEND"]
            in_memory = backend.endswith("InMemoryChannelLayer")
            _current = _InProcessPublisher() if in_memory else _LoopPublisher()
        return _current


def reset_publisher() -> None:
    """Forget the process's publisher (tests that swap channel layer settings)."""
    global _current
    with _lock:
        _current = None
