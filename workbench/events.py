"""The workspace event log and its broadcast. The only module that touches the channel layer.

`record_event` runs inside the caller's transaction, so the change and its event commit
together; `publish` runs after commit and is a hint: a lost broadcast shows up to clients as
a gap in `seq`, and they resume from the Event table.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from asgiref.sync import async_to_sync
from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import F

from workbench.models import Event, Workspace

if TYPE_CHECKING:
    from collections.abc import Iterator

logger = logging.getLogger(__name__)

EventName = Literal[
    "workspace.updated",
    "task.updated",
    "sandbox.updated",
    "provisioning.step",
    "tab.updated",
    "message.created",
    "message.updated",
]
EVENT_NAMES: frozenset[str] = frozenset(EventName.__args__)  # type: ignore[attr-defined]


class EventFrame(TypedDict):
    """What a client receives for each change (and what resume replays)."""

    type: Literal["event"]
    seq: int
    event: EventName
    data: dict[str, Any]


class GroupMessage(TypedDict):
    """What travels over the channel layer to each consumer."""

    type: Literal["workbench.event"]
    seq: int
    event: EventName
    data: dict[str, Any]


def group_name(workspace_id: int) -> str:
    # Channels group names: ASCII alphanumerics, '-', '_' and '.', under 100 characters.
    return f"workspace.{workspace_id}"


def event_frame(event: Event) -> EventFrame:
    return {"type": "event", "seq": event.seq, "event": event.name, "data": event.data}


@contextmanager
def workspace_transaction(workspace_id: int) -> Iterator[None]:
    """A transaction that takes the workspace's event lock before anything else.

    Every write that records an event must lock the workspace's counter row at some
    point; taking it first, always, gives one lock order (workspace, then rows) so two
    writers can never deadlock (tab then counter in one, counter then tab in another).
    It costs nothing extra: writes of one workspace were already serialized on that row.
    """
    with transaction.atomic():
        list(Workspace.objects.select_for_update().filter(pk=workspace_id).values_list("pk"))
        yield


def record_event(workspace_id: int, name: EventName, data: dict[str, Any]) -> int:
    """Append an event to the workspace's log in the current transaction; returns its seq.

    1. Increment the workspace's counter; the UPDATE locks the row until commit, so
       concurrent writers of one workspace take consecutive numbers: the log is gapless.
    2. Insert the Event row with that seq.
    3. Broadcast it after commit (never before: a client could see an uncommitted change).
    """
    if name not in EVENT_NAMES:
        raise ValueError(f"unknown event name {name!r}")
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("record_event must run inside the transaction of the change")
    plain = json.loads(json.dumps(data, cls=DjangoJSONEncoder))
    Workspace.objects.filter(pk=workspace_id).update(event_seq=F("event_seq") + 1)
    seq = Workspace.objects.filter(pk=workspace_id).values_list("event_seq", flat=True).get()
    Event.objects.create(workspace_id=workspace_id, seq=seq, name=name, data=plain)
    transaction.on_commit(partial(publish, workspace_id, seq, name, plain), robust=True)
    return seq


def publish(workspace_id: int, seq: int, name: EventName, data: dict[str, Any]) -> None:
    """Send one committed event to the workspace's group; failures are logged, not raised."""
    message: GroupMessage = {"type": "workbench.event", "seq": seq, "event": name, "data": data}
    try:
        _publisher().send(group_name(workspace_id), dict(message))
    except Exception:
        logger.warning(
            "publishing event %s#%s failed; clients will resume", workspace_id, seq, exc_info=True
        )


class _LoopPublisher:
    """One event loop thread and one channel layer per process (Celery workers, Daphne).

    `async_to_sync` per event would build a new loop and Redis connection every time
    (milliseconds each, and "Event loop is closed" errors in workers); this keeps both.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
        self.loop = asyncio.new_event_loop()
        thread = threading.Thread(target=self.loop.run_forever, name="event-publisher", daemon=True)
        thread.start()

    def send(self, group: str, message: dict[str, Any]) -> None:
        future = asyncio.run_coroutine_threadsafe(self.layer.group_send(group, message), self.loop)
        # Waiting keeps one process's events in order on the wire; a send takes about 1 ms.
        future.result(timeout=5)


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
