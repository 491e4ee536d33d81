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
from typing import TYPE_CHECKING, Any, Literal, TypedDict, cast

from asgiref.sync import async_to_sync
from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils.timezone import now

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
    """What travels over the channel layer to each process's fan-out hub."""

    type: Literal["workbench.event"]
    workspace: int
    seq: int  # for logs
    text: str  # the event frame as JSON, encoded once here rather than once per socket


def group_name(workspace_id: int) -> str:
    # Channels group names: ASCII alphanumerics, '-', '_' and '.', under 100 characters.
    return f"workspace.{workspace_id}"


def event_frame(event: Event) -> EventFrame:
    return _frame(event.seq, cast("EventName", event.name), event.data)


def _frame(seq: int, name: EventName, data: dict[str, Any]) -> EventFrame:
    return {"type": "event", "seq": seq, "event": name, "data": data}


@contextmanager
def workspace_transaction(workspace_id: int) -> Iterator[None]:
    """A transaction that takes the workspace's event lock before anything else.

    Every write that records an event must lock the workspace's counter row at some
    point; taking it first, always, gives one lock order (workspace, then rows) so two
    writers can never deadlock (tab then counter in one, counter then tab in another).
    It costs nothing extra: writes of one workspace were already serialized on that row.
    """
    held: set[int] | None = getattr(_held, "ids", None)
    if held is not None:
        # Inside another workspace transaction of this thread: no savepoint (two round trips
        # on PostgreSQL, while the workspace lock is held; nothing catches an error half-way
        # through a service) and no second lock query for a workspace already locked.
        with transaction.atomic(savepoint=False):
            _lock_workspace(workspace_id, held)
            yield
        return
    _held.ids = set()
    try:
        with _writer_turn(), transaction.atomic():
            try:
                _lock_workspace(workspace_id, _held.ids)
                yield
            finally:
                # Before the commit: its on_commit callbacks run with no lock held, and a
                # transaction they open must lock afresh.
                _held.ids = None
    finally:
        _held.ids = None


# The workspaces whose lock this thread's outermost workspace_transaction holds.
_held = threading.local()


def _lock_workspace(workspace_id: int, held: set[int]) -> None:
    if workspace_id in held:
        return
    if row_locks():
        list(Workspace.objects.select_for_update().filter(pk=workspace_id).values_list("pk"))
    held.add(workspace_id)


# SQLite admits one writer at a time, and a writer that finds the database locked sleeps in
# SQLite's busy handler (1, 2, 5 ... 100 ms) rather than being woken when the lock frees: under
# overload the request threads of one process slept while the lock sat idle, and throughput
# fell to half (docs/benchmarks.md). Within a process they queue here instead and are handed
# the turn at once; only writers of other processes still meet the busy handler.
_sqlite_writers = threading.Lock()


@contextmanager
def _writer_turn() -> Iterator[None]:
    connection = transaction.get_connection()
    # Inside a transaction already, this thread holds SQLite's write lock (BEGIN IMMEDIATE):
    # waiting here then could deadlock with a thread that has our turn and waits for SQLite.
    if row_locks() or connection.in_atomic_block:
        yield
        return
    with _sqlite_writers:
        yield


def row_locks() -> bool:
    """Whether SELECT ... FOR UPDATE locks anything here.

    Not on SQLite: it has no row locks, and its write transaction (BEGIN IMMEDIATE, see
    settings) already excludes every other writer until commit. Django runs the SELECT
    without FOR UPDATE there, so skipping it only saves a query (docs/benchmarks.md).
    """
    return bool(transaction.get_connection().features.has_select_for_update)


def record_event(workspace_id: int, name: EventName, data: dict[str, Any]) -> int:
    """Append an event to the workspace's log in the current transaction; returns its seq.

    1. Increment the workspace's counter; the UPDATE locks the row until commit, so
       concurrent writers of one workspace take consecutive numbers: the log is gapless.
    2. Insert the Event row with that seq.
    3. Broadcast it after commit (never before: a client could see an uncommitted change).
    """
    _check_recordable(name)
    text = json.dumps(data, cls=DjangoJSONEncoder)
    plain = json.loads(text)
    seq = _append(workspace_id, name, plain, text)
    transaction.on_commit(partial(publish, workspace_id, seq, name, plain), robust=True)
    return seq


def _check_recordable(name: str) -> None:
    if name not in EVENT_NAMES:
        raise ValueError(f"unknown event name {name!r}")
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("events must be recorded inside the transaction of the change")


def record_events(workspace_id: int, name: EventName, datas: list[dict[str, Any]]) -> None:
    """record_event for many changes of one transaction, in three statements whatever their
    number (a hand-off moves every tab waiting on a sandbox at once, under the lock)."""
    _check_recordable(name)
    if not datas:
        return
    plain = [json.loads(json.dumps(data, cls=DjangoJSONEncoder)) for data in datas]
    last = _next_seq(workspace_id, count=len(plain))
    first = last - len(plain) + 1
    Event.objects.bulk_create(
        Event(workspace_id=workspace_id, seq=first + i, name=name, data=data)
        for i, data in enumerate(plain)
    )
    for i, data in enumerate(plain):
        transaction.on_commit(partial(publish, workspace_id, first + i, name, data), robust=True)


def _append(workspace_id: int, name: str, plain: dict[str, Any], text: str) -> int:
    """Number the event and insert it; returns its seq.

    On PostgreSQL in one statement (the counter's UPDATE feeding the INSERT): every write of
    a workspace waits for the one holding its lock, and each statement it makes while
    holding it is a round trip (docs/benchmarks.md). SQLite has no UPDATE in a WITH.
    """
    connection = transaction.get_connection()
    if connection.vendor != "postgresql":
        seq = _next_seq(workspace_id)
        Event.objects.create(workspace_id=workspace_id, seq=seq, name=name, data=plain)
        return seq
    workspaces = connection.ops.quote_name(Workspace._meta.db_table)
    events = connection.ops.quote_name(Event._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH counter AS (UPDATE {workspaces} SET event_seq = event_seq + 1"
            " WHERE id = %s RETURNING event_seq)"
            f" INSERT INTO {events} (workspace_id, seq, name, data, created_at)"
            " SELECT %s, event_seq, %s, %s::jsonb, %s FROM counter RETURNING seq",
            [workspace_id, workspace_id, name, text, now()],
        )
        row = cursor.fetchone()
    if row is None:
        raise Workspace.DoesNotExist(f"workspace {workspace_id}")
    return int(row[0])


def _next_seq(workspace_id: int, *, count: int = 1) -> int:
    """Add `count` to the workspace's counter and return it: one UPDATE ... RETURNING
    (SQLite 3.35+ and PostgreSQL) instead of an UPDATE and a SELECT."""
    connection = transaction.get_connection()
    table = connection.ops.quote_name(Workspace._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET event_seq = event_seq + %s WHERE id = %s RETURNING event_seq",
            [count, workspace_id],
        )
        row = cursor.fetchone()
    if row is None:
        raise Workspace.DoesNotExist(f"workspace {workspace_id}")
    return int(row[0])


def publish(workspace_id: int, seq: int, name: EventName, data: dict[str, Any]) -> None:
    """Send one committed event to the workspace's group; failures are logged, not raised."""
    message: GroupMessage = {
        "type": "workbench.event",
        "workspace": workspace_id,
        "seq": seq,
        "text": json.dumps(_frame(seq, name, data)),
    }
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
