"""The system-wide lock order: every write of a workspace takes the workspace's row first.

One order (workspace, then rows) means two writers can never deadlock, and the workspace's
event log stays gapless: its counter row is the lock (core.events numbers under it).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING

from django.db import transaction

from core.models import Workspace

if TYPE_CHECKING:
    from collections.abc import Iterator


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
