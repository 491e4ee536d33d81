"""The websocket's heavy reads (snapshots, resumes), built fairly between users.

Why: Channels runs every consumer's `database_sync_to_async` call of a process on one
thread, first come first served. One member opening 200 sockets on a 321 KiB workbench
queued 200 snapshot builds (~0.4 s each) there, and every other user's connect, whose token
and membership lookups run on that same thread, waited behind them; Daphne drops a
handshake not accepted within 5 s, so 15 of 17 other connects failed during the 80 s flood
(docs/benchmarks.md, "Socket flood": now 0 of 63, p50 44 ms, even without the socket cap).
Here:

1. snapshots and resumes are built off the shared thread, so it only sees short queries
   (authentication, membership, pings): in WORKBENCH_SNAPSHOT_PROCESSES builder processes
   of their own (spawned by each Daphne), or with 0 on WORKBENCH_SNAPSHOT_THREADS threads
   of Daphne's process (the tests' in-process consumers, whose database only they see);
2. at most WORKBENCH_SNAPSHOTS_PER_USER builds of one user are on that pool (running or
   queued) at once per process; the user's others wait in their own first-come line, so a
   flood queues behind itself, not in front of everyone;
3. frames are JSON-encoded by the builder too, not on the event loop every socket shares.

Why processes: a build is ~60 ms of Python on PostgreSQL for a page of 50 tasks, and on a
thread of Daphne it holds the GIL that long, so every other socket's pong waited behind it
(another member's ping p99 2.05-2.35x idle on threads, 1.31-1.52x in processes, while one
member reconnected once a second to a 10,000-task workspace; docs/benchmarks.md,
"Snapshots in builder processes").
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import os
import threading
import time
import weakref
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import close_old_connections

from core import selectors as core_selectors
from core.events import event_message
from core.models import Membership, Workspace
from core.publish import text_for
from workbench import builder_process, selectors

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from multiprocessing.queues import SimpleQueue

T = TypeVar("T")
logger = logging.getLogger(__name__)


@dataclass
class _Line:
    semaphore: asyncio.Semaphore
    users: int = 0


class KeyedGate:
    """At most `limit` holders per key at once; the others wait in arrival order."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.lines: dict[object, _Line] = {}

    @asynccontextmanager
    async def hold(self, key: object) -> AsyncIterator[None]:
        line = self.lines.get(key)
        if line is None:
            line = self.lines[key] = _Line(asyncio.Semaphore(self.limit))
        line.users += 1
        try:
            async with line.semaphore:
                yield
        finally:
            line.users -= 1
            if line.users == 0:  # nobody holds or waits: forget the key
                del self.lines[key]


# One gate per event loop: Daphne has one; tests may run several in turn.
_gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, KeyedGate] = (
    weakref.WeakKeyDictionary()
)
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _gate() -> KeyedGate:
    loop = asyncio.get_running_loop()
    gate = _gates.get(loop)
    if gate is None:
        gate = _gates[loop] = KeyedGate(settings.WORKBENCH_SNAPSHOTS_PER_USER)
    return gate


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            workers = max(1, settings.WORKBENCH_SNAPSHOT_THREADS)
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="snapshot")
        return _pool


@dataclass
class _Builders:
    """A Daphne's builder processes, and which of them have started."""

    executor: ProcessPoolExecutor
    # Each builder puts its pid here once Django is set up in it (builder_process.start).
    started: SimpleQueue[int]
    # A job per builder, submitted at once: the executor spawns one builder per job while
    # none is idle, so all of them start before the first build needs one. A builder that
    # dies before they are done fails them (BrokenProcessPool).
    spawns: list[Future[int]]
    ready: set[int] = field(default_factory=set)


@dataclass
class _Restarts:
    """Replacements made by readiness since the builders were last all up."""

    count: int = 0
    at: float = float("-inf")  # time.monotonic() of the last one

    def due(self) -> bool:
        # The first at once, then one per 2, 4 ... 60 s: builders that die as they start
        # (a broken deploy, no memory) must not make every probe spawn interpreters.
        return time.monotonic() - self.at >= min(60.0, 2.0**self.count)


_builders: _Builders | None = None
_restarts = _Restarts()
_started = False  # start_builders() ran: this process serves sockets (Daphne)
GIVE_UP_AFTER = 3  # replacements in a row, then readiness says "error", not "starting"


def _builder_pool() -> _Builders:
    global _builders
    with _pool_lock:
        if _builders is None:
            context = multiprocessing.get_context("spawn")
            size = settings.WORKBENCH_SNAPSHOT_PROCESSES
            started: SimpleQueue[int] = context.SimpleQueue()
            executor = ProcessPoolExecutor(
                max_workers=size,
                # Not fork: Daphne's process has threads (a lock held by one at the fork
                # stays held in the child forever).
                mp_context=context,
                initializer=builder_process.start,
                initargs=(started,),
            )
            spawns = [executor.submit(os.getpid) for _ in range(size)]
            _builders = _Builders(executor, started, spawns)
        return _builders


def start_builders() -> None:
    """Spawn the builders now, at a Daphne's start, so the first snapshots (a reconnect storm
    after a restart) do not each wait for a builder's interpreter and Django setup."""
    global _started
    if settings.WORKBENCH_SNAPSHOT_PROCESSES > 0:
        _started = True
        _builder_pool()


def builders_check() -> str | None:
    """/readyz's word on this process's builders: None where it has none (builds on
    threads, or a process that never started them), "ok" once every builder has set Django
    up and is alive, "starting" before, "error: ..." once replacements keep dying.

    Readiness waits for them because their start slows everything else Daphne does
    (docs/benchmarks.md, "A Daphne's first seconds"). A dead builder is replaced here (a
    Daphne reported unready gets no sockets whose builds would replace it), by dropping its
    pool: the pool fails what it had in flight with BrokenProcessPool, which `_in_builder`
    tries once more on the new one.
    """
    if settings.WORKBENCH_SNAPSHOT_PROCESSES <= 0 or not _started:
        return None
    builders = _builder_pool()
    # Reaps exited builders (waitpid WNOHANG); the executor notices deaths by their
    # sentinels, not by waiting for them, so this hides nothing from it.
    alive = {child.pid for child in multiprocessing.active_children()}
    with _pool_lock:
        while not builders.started.empty():
            builders.ready.add(builders.started.get())
        ready = set(builders.ready)
    died_starting = any(
        f.done() and not f.cancelled() and f.exception() is not None for f in builders.spawns
    )
    if died_starting or not ready <= alive:
        if _restarts.due():
            logger.warning(
                "snapshot builders: %s died %s; starting them afresh",
                sorted(ready - alive) or "one",
                "while starting" if died_starting else "after starting",
            )
            _restarts.count += 1
            _restarts.at = time.monotonic()
            _drop_builders(builders)
            _builder_pool()
        return "error: builders keep dying" if _restarts.count >= GIVE_UP_AFTER else "starting"
    if len(ready) < len(builders.spawns):
        return "starting"
    _restarts.count = 0
    return "ok"


def _drop_builders(builders: _Builders) -> None:
    """The next build or check makes a new pool; this one ends itself once it sees its dead
    builder (no shutdown here: it would cancel the builds it has queued, unretried)."""
    global _builders
    with _pool_lock:
        if _builders is builders:
            _builders = None


def _forget_builders(broken: _Builders) -> None:
    _drop_builders(broken)
    broken.executor.shutdown(wait=False, cancel_futures=True)


def _build_here(build: Callable[..., T], *args: object) -> T:
    """In a builder process: `build(*args)` on a connection checked as a request's is."""
    close_old_connections()
    try:
        return build(*args)
    finally:
        close_old_connections()


async def _in_builder(build: Callable[..., T], *args: object) -> T:
    loop = asyncio.get_running_loop()
    builders = _builder_pool()
    try:
        return await loop.run_in_executor(builders.executor, _build_here, build, *args)
    except BrokenProcessPool:  # a builder died (killed, out of memory): once more, afresh
        _forget_builders(builders)
        return await loop.run_in_executor(_builder_pool().executor, _build_here, build, *args)


async def _in_turn(user_id: int, build: Callable[..., T], *args: object) -> T:
    """`build(*args)` in a builder process (or on the snapshot threads) once it is
    `user_id`'s turn."""
    async with _gate().hold(user_id):
        if settings.WORKBENCH_SNAPSHOT_PROCESSES > 0:
            return await _in_builder(build, *args)
        run = database_sync_to_async(build, thread_sensitive=False, executor=_executor())
        return await run(*args)


class NotMember(Exception):
    """The user is no longer a member (removed while the socket connected or resumed)."""


def _check_member(workspace_id: int, user_id: int) -> None:
    # After the frames' reads: a removal that committed before them is seen here, so the
    # socket closes even if the `member.removed` broadcast came before it joined the hub;
    # one that commits later reaches the socket through the hub, after these frames.
    if not Membership.objects.filter(workspace_id=workspace_id, user_id=user_id).exists():
        raise NotMember(user_id)


def _snapshot_text(workspace_id: int, user_id: int) -> str:
    workspace = Workspace.objects.get(pk=workspace_id)
    snapshot = selectors.workbench_snapshot(workspace=workspace, user_id=user_id)
    _check_member(workspace_id, user_id)
    # Not ASCII-escaped: the page's byte budget counts UTF-8 (workbench/workbench_pages.py).
    return json.dumps(snapshot, ensure_ascii=False)


def _events_after_texts(workspace_id: int, seq: int, user_id: int) -> list[str] | None:
    current = Workspace.objects.filter(pk=workspace_id).values_list("event_seq", flat=True).get()
    if seq > current:  # never issued here (say, a restored database): the client starts over
        _check_member(workspace_id, user_id)
        return None
    events = core_selectors.events_after(workspace_id=workspace_id, seq=seq)
    _check_member(workspace_id, user_id)
    if events is None:
        return None
    return [text_for(event_message(event), user_id) for event in events]


async def snapshot_text(*, workspace_id: int, user_id: int) -> str:
    """The workspace's snapshot frame as the user sees it, as JSON text. Raises NotMember."""
    return await _in_turn(user_id, _snapshot_text, workspace_id, user_id)


async def events_after_texts(*, workspace_id: int, seq: int, user_id: int) -> list[str] | None:
    """The event frames after `seq` as the user sees them (another member's private events
    as `private` frames), as JSON texts; None when a snapshot is needed instead. Raises
    NotMember."""
    return await _in_turn(user_id, _events_after_texts, workspace_id, seq, user_id)
