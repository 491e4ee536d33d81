"""One channel-layer subscription per workspace per process, fanned out to its sockets.

Channels' usual way, a group membership per socket, has the layer queue every event once
per socket and wake each consumer's task to receive, dispatch and send it: with 1,000
sockets on one workspace that was most of Daphne's CPU per event (docs/benchmarks.md).
Here each process joins a workspace's group once, with one hub channel, and writes the
event frame (JSON encoded once, by the publisher) straight to each local socket in turn.

Ordering: publishers in different processes (Celery workers, Daphne's request threads)
race to Redis, so the layer may hand over seq N+1 before N (15-18 reorders in 5 rounds of
20 concurrent tab opens; each cost the client a gap and a resume). So per workspace the
hub owes its sockets one next seq (`_Stream`), delivered by one task per workspace:

1. the next seq is sent at once, then any held successors, in order;
2. a later one is held, at most WORKBENCH_STREAM_GAP_WAIT_MS after it arrived; then the
   missing ones are read from the event log and sent, then the held ones. The log has
   them: seq is assigned under the workspace row lock, so once N+1 is committed (it was
   broadcast after commit) every seq <= N is committed too;
3. an older seq or a duplicate is dropped (already sent, live or from the log);
4. past MAX_HELD held messages, newcomers are dropped and read from the log at once, so a
   flood cannot grow memory;
5. what the log no longer has (pruned) is skipped: clients see the gap and resume.

A socket joins before its snapshot is read (so nothing committed after it is missed) and
holds what arrives meanwhile until the snapshot is sent; clients drop what the snapshot
already covers (docs/websocket.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from channels.db import database_sync_to_async
from django.conf import settings

from core.events import event_message
from core.models import Event, Workspace
from core.publish import GroupMessage, group_name, private_frame_text

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

# A pong's seq is at most this old (seconds): see PongSeqs.
PONG_SEQ_MAX_AGE = 0.5


class Subscriber(Protocol):
    user_id: int

    async def deliver(self, text: str) -> None: ...

    async def revoked(self) -> None:
        """Its user is no longer a member: close (4403)."""


class _Stream:
    """One workspace's order: the next seq its sockets are owed and the later ones held."""

    def __init__(self) -> None:
        self.next: int | None = None  # None until the baseline is read (join)
        self.held: dict[int, tuple[GroupMessage, float]] = {}  # seq -> (message, arrival)
        self.known = 0  # the highest seq seen, held or dropped
        self.dropped = 0  # the highest seq dropped for want of room: the log has it
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def offer(self, message: GroupMessage, now: float, room: int) -> None:
        seq = message["seq"]
        if (self.next is not None and seq < self.next) or seq in self.held:
            return  # a duplicate, or already sent (live or from the log)
        self.known = max(self.known, seq)
        if seq != self.next and len(self.held) >= room:
            self.dropped = max(self.dropped, seq)
        else:
            self.held[seq] = (message, now)
        self.wake.set()

    def start_at(self, next_seq: int) -> None:
        self.next = next_seq
        self.known = max(self.known, next_seq - 1)
        self.forget_older()

    def forget_older(self) -> None:
        assert self.next is not None
        for seq in [seq for seq in self.held if seq < self.next]:
            del self.held[seq]


class PongSeqs:
    """The seq a pong carries: each workspace's committed seq, read from the database at
    most about twice per `max_age` seconds per process and shared by every ping meanwhile.

    A pong must let a client notice a lost *last* event (no later one shows the gap), so the
    seq comes from the database, not from what the hub has seen (a lost broadcast never
    reaches the hub). It may be up to `max_age` old: a value is served only while the read
    that produced it started at most `max_age` ago, so an event committed `max_age` before a
    ping is always in its pong, and a client notices a lost last event at most `max_age`
    later than with a read per ping.

    Why: every ping read the seq on Channels' one shared database thread, behind the
    connects' auth and membership queries, each read a handful of GIL hand-offs while a
    snapshot build held the GIL; on PostgreSQL another member's ping p99 was 3.6x idle while
    one member reconnected to a 10,000-task workspace (docs/benchmarks.md, 2026-12-07).

    1. a value younger than `max_age` is answered at once; past half of it, one read starts
       in the background, so pings at a steady rate rarely wait;
    2. otherwise the ping waits for the read under way (one that started within `max_age`),
       or starts one: concurrent pings of a workspace share one read (single flight);
    3. reads run on the hub's reader threads (`_current_seq`), not the shared thread; a
       failed read raises in the pings that waited for it, and the next ping reads again.
    """

    SWEEP_SECONDS = 30.0

    def __init__(
        self,
        max_age: float,
        read: Callable[[int], Awaitable[int]] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.max_age = max_age
        # Looked up at each read (not bound here), so tests may replace `_current_seq`.
        self.read = read or (lambda workspace_id: _current_seq(workspace_id))
        self.clock = clock or (lambda: asyncio.get_running_loop().time())
        self.known: dict[int, tuple[float, int]] = {}  # workspace -> (read started, seq)
        self.reading: dict[int, tuple[float, asyncio.Task[int]]] = {}
        self.swept = 0.0

    async def current(self, workspace_id: int) -> int:
        """The workspace's committed seq as of at most `max_age` seconds ago."""
        now = self.clock()
        self._sweep(now)
        known = self.known.get(workspace_id)
        reading = self.reading.get(workspace_id)
        if known is not None and now - known[0] <= self.max_age:
            if reading is None and now - known[0] > self.max_age / 2:
                self._start(workspace_id, now)  # ahead of need: later pings find it fresh
            return known[1]
        if reading is None or now - reading[0] > self.max_age:
            reading = self._start(workspace_id, now)
        # Shielded: a socket closing while it waits must not cancel the others' read.
        return await asyncio.shield(reading[1])

    def _start(self, workspace_id: int, now: float) -> tuple[float, asyncio.Task[int]]:
        task = asyncio.get_running_loop().create_task(self._read(workspace_id))
        entry = self.reading[workspace_id] = (now, task)
        task.add_done_callback(partial(self._done, workspace_id, entry))
        return entry

    async def _read(self, workspace_id: int) -> int:
        return await self.read(workspace_id)

    def _done(
        self, workspace_id: int, entry: tuple[float, asyncio.Task[int]], task: asyncio.Task[int]
    ) -> None:
        if self.reading.get(workspace_id) is entry:
            del self.reading[workspace_id]
        if task.cancelled():
            return
        error = task.exception()  # also marks it retrieved when no ping waited for it
        if error is not None:
            logger.warning("reading the seq of workspace %s failed: %s", workspace_id, error)
            return
        known = self.known.get(workspace_id)
        if known is None or known[0] < entry[0]:
            self.known[workspace_id] = (entry[0], task.result())

    def _sweep(self, now: float) -> None:
        # Values past max_age are never answered again: forget them, now and then.
        if now - self.swept < self.SWEEP_SECONDS:
            return
        self.swept = now
        for workspace_id, (started, _) in list(self.known.items()):
            if now - started > self.max_age:
                del self.known[workspace_id]


class WorkspaceHub:
    """The process's (event loop's) members per workspace, and the tasks that feed them."""

    RETRY_SECONDS = 0.5
    MAX_HELD = 1000  # per workspace; also the most rows one fill reads

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.members: dict[int, set[Subscriber]] = {}
        self.streams: dict[int, _Stream] = {}
        self.channel: str | None = None
        self.task: asyncio.Task[None] | None = None
        self.lock = asyncio.Lock()
        self.gap_wait = settings.WORKBENCH_STREAM_GAP_WAIT_MS / 1000
        self.pong_seqs = PongSeqs(PONG_SEQ_MAX_AGE)

    async def pong_seq(self, workspace_id: int) -> int:
        """The seq a pong on this workspace carries: committed, at most PONG_SEQ_MAX_AGE old."""
        return await self.pong_seqs.current(workspace_id)

    async def join(self, workspace_id: int, subscriber: Subscriber) -> None:
        """From now on, `subscriber` gets every event of the workspace published after this
        returns (and possibly a few before)."""
        async with self.lock:
            if self.channel is None:
                self.channel = await self.layer.new_channel("workbench-hub.")
                self.task = asyncio.get_running_loop().create_task(self._run(self.channel))
            members = self.members.get(workspace_id)
            if members is None:
                await self._subscribe(workspace_id, self.channel)
                members = self.members[workspace_id] = set()
            members.add(subscriber)

    async def _subscribe(self, workspace_id: int, channel: str) -> None:
        # The stream exists before group_add, so what arrives during the baseline read is
        # held, not lost. The baseline is read after group_add: every seq after it is
        # committed later, so its broadcast reaches this channel. Nothing older is owed:
        # each socket reads its snapshot after join returns, so the snapshot covers it.
        # Under the hub's lock, so a second socket's join also waits for the baseline.
        stream = self.streams[workspace_id] = _Stream()
        try:
            await self.layer.group_add(group_name(workspace_id), channel)
            stream.start_at(await _current_seq(workspace_id) + 1)
        except BaseException:
            del self.streams[workspace_id]
            with contextlib.suppress(Exception):
                await self.layer.group_discard(group_name(workspace_id), channel)
            raise
        stream.task = asyncio.get_running_loop().create_task(self._feed(workspace_id, stream))

    async def leave(self, workspace_id: int, subscriber: Subscriber) -> None:
        async with self.lock:
            members = self.members.get(workspace_id)
            if members is None or subscriber not in members:
                return
            members.discard(subscriber)
            if not members:
                del self.members[workspace_id]
                stream = self.streams.pop(workspace_id)
                if stream.task is not None:
                    stream.task.cancel()
                assert self.channel is not None
                await self.layer.group_discard(group_name(workspace_id), self.channel)

    def stop(self) -> None:
        """Cancel the receiving task and every workspace's (a hub being replaced)."""
        for task in (self.task, *(stream.task for stream in self.streams.values())):
            if task is not None:
                task.cancel()

    async def _run(self, channel: str) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                message = await self.layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                # The layer reconnects on its own (config.channel_layer); events lost
                # meanwhile show up as a gap, filled from the log once a later one arrives.
                logger.warning("the fan-out hub could not receive; retrying", exc_info=True)
                await asyncio.sleep(self.RETRY_SECONDS)
                continue
            if message.get("type") != "workbench.event":
                continue
            stream = self.streams.get(message["workspace"])
            if stream is not None:
                stream.offer(message, loop.time(), self.MAX_HELD)

    async def _feed(self, workspace_id: int, stream: _Stream) -> None:
        """Send the workspace's events in seq order (the module's steps 1-5). One task per
        workspace: a gap's wait or log read, or slow sockets, hold up only this workspace."""
        while True:
            try:
                await self._step(workspace_id, stream)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A bug here must not leave the workspace silent in this process for good.
                logger.exception("the fan-out of workspace %s failed; going on", workspace_id)
                await asyncio.sleep(self.RETRY_SECONDS)

    async def _step(self, workspace_id: int, stream: _Stream) -> None:
        assert stream.next is not None
        entry = stream.held.pop(stream.next, None)
        if entry is not None:
            stream.next += 1
            await self._send(entry[0])
            return
        stream.wake.clear()
        if stream.known < stream.next:  # nothing owed: wait for the next event
            await stream.wake.wait()
            return
        if stream.dropped < stream.next and stream.held:
            oldest = min(arrived for _, arrived in stream.held.values())
            remaining = oldest + self.gap_wait - asyncio.get_running_loop().time()
            if remaining > 0:  # the missing one may still be on its way
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stream.wake.wait(), remaining)
                return
        await self._fill(workspace_id, stream)

    async def _fill(self, workspace_id: int, stream: _Stream) -> None:
        """Send what the log has from the next seq on (at most MAX_HELD rows), then skip
        what it lacks, up to what is held."""
        assert stream.next is not None
        first = stream.next
        last = min(stream.known, first + self.MAX_HELD - 1)
        try:
            messages = await _log_messages(workspace_id, first, last)
        except Exception:
            logger.warning(
                "reading events %s#%s-%s failed", workspace_id, first, last, exc_info=True
            )
            messages = []
        for message in messages:  # in seq order, from `first` on
            if message["seq"] > stream.next:
                logger.info(
                    "events %s#%s-%s were pruned", workspace_id, stream.next, message["seq"] - 1
                )
            stream.next = message["seq"] + 1
            stream.held.pop(message["seq"], None)
            await self._send(message)
        if stream.next <= last:
            # Not in the log (pruned, or the read failed): on to the first held one; each
            # client sees the gap and resumes or takes a snapshot, as without ordering.
            missing = stream.next
            later = [seq for seq in stream.held if seq >= missing]
            stream.next = min(later) if later else last + 1
            logger.info(
                "events %s#%s-%s skipped: not in the log", workspace_id, missing, stream.next - 1
            )
        stream.forget_older()

    async def _send(self, message: GroupMessage) -> None:
        # Who gets the event and what everyone else gets instead, worked out once per event
        # rather than once per socket (a reply marks a tab unread for every member at once).
        audience = None if message["audience"] is None else frozenset(message["audience"])
        private = None if audience is None else private_frame_text(message["seq"])
        # A copy: a socket that leaves during the sends changes the set.
        for subscriber in tuple(self.members.get(message["workspace"], ())):
            mine = audience is None or subscriber.user_id in audience
            try:
                await subscriber.deliver(message["text"] if mine or private is None else private)
                if message["revoke"] == subscriber.user_id:
                    await subscriber.revoked()
            except Exception:
                # One broken socket must not keep the event from the others.
                logger.warning("delivering an event to a socket failed", exc_info=True)


# The hub's reads (baselines, log fills, pongs' seqs) run on their own threads: not on the
# event loop, and not queued behind the consumers' reads on Channels' one shared database
# thread (workbench/snapshots.py).
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="fanout-log")
        return _pool


def _read_seq(workspace_id: int) -> int:
    return Workspace.objects.filter(pk=workspace_id).values_list("event_seq", flat=True).get()


def _read_log(workspace_id: int, first: int, last: int) -> list[GroupMessage]:
    events = Event.objects.filter(workspace_id=workspace_id, seq__gte=first, seq__lte=last)
    return [event_message(event) for event in events.order_by("seq")]


async def _current_seq(workspace_id: int) -> int:
    run = database_sync_to_async(_read_seq, thread_sensitive=False, executor=_executor())
    return await run(workspace_id)


async def _log_messages(workspace_id: int, first: int, last: int) -> list[GroupMessage]:
    """The log's events first..last of the workspace, in order, as their broadcasts."""
    run = database_sync_to_async(_read_log, thread_sensitive=False, executor=_executor())
    return await run(workspace_id, first, last)


# One hub per event loop: Daphne has one; tests may run several in turn.
_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, WorkspaceHub] = (
    weakref.WeakKeyDictionary()
)


def hub_for(layer: Any) -> WorkspaceHub:
    """The running loop's hub on `layer` (made on first use)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None or hub.layer is not layer:
        if hub is not None:
            hub.stop()
        hub = _hubs[loop] = WorkspaceHub(layer)
    return hub
