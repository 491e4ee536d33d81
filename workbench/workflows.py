"""The one place that builds and sends the background work for tabs and sandboxes.

Called after commit by services; it only publishes messages, it never writes rows.
"""

from __future__ import annotations

import atexit
import contextvars
import logging
import os
import queue
import threading
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

from celery import current_app
from django.db import transaction

from core import logs

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from uuid import UUID

logger = logging.getLogger(__name__)

# Set while an HTTP request is handled (config.handlers): its dispatches are published by
# the process's dispatcher thread, after the response, instead of inside the request.
_in_request: contextvars.ContextVar[bool] = contextvars.ContextVar("in_request", default=False)


def dispatch_after_commit(start: Callable[..., None], **kwargs: Any) -> None:
    """Run `start(**kwargs)` once the current transaction commits, never on rollback.

    Publish after commit: a worker could otherwise read a row that does not exist yet.
    A publish that fails is logged and left to the reconciler (the row is the truth).
    Inside an HTTP request the publish is handed to the process's dispatcher thread, so the
    response does not wait for the broker (a Celery publish costs ~1-2 ms of the request,
    docs/benchmarks.md); elsewhere (workers, commands, tests) it runs inline.
    """
    # The publish carries the ids of who dispatched it (core/logs.py), wherever it runs.
    job = partial(_dispatch, start, kwargs, logs.ids())
    if _in_request.get():
        transaction.on_commit(lambda: _dispatcher().submit(job))
    else:
        transaction.on_commit(job)


@contextmanager
def publishing_in_background() -> Iterator[None]:
    """Within this block (one HTTP request), dispatches go to the dispatcher thread."""
    token = _in_request.set(True)
    try:
        yield
    finally:
        _in_request.reset(token)


def _dispatch(start: Callable[..., None], kwargs: dict[str, Any], ids: dict[str, str]) -> None:
    with logs.scope(**ids):
        try:
            start(**kwargs)
        except Exception:
            logger.exception(
                "dispatching %s%s failed; the reconciler will re-drive it",
                getattr(start, "__name__", start),
                kwargs,
            )


class _Dispatcher:
    """One thread per process that runs dispatches in the order they were submitted.

    A dispatch only lives in this queue for the time of one broker round trip; one lost
    to a crash in that window is a tab that stalls until the reconciler re-drives it, as a
    crash between commit and an inline publish would. A normal exit drains the queue.
    """

    DRAIN_SECONDS = 5.0

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self.idle = threading.Event()
        self.idle.set()
        self.pending = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._run, name="dispatcher", daemon=True).start()
        atexit.register(self.drain, self.DRAIN_SECONDS)

    def submit(self, job: Callable[[], None]) -> None:
        with self.lock:
            self.pending += 1
            self.idle.clear()
        self.jobs.put(job)

    def drain(self, timeout: float) -> bool:
        """Wait until every submitted dispatch ran (registered to run at exit)."""
        return self.idle.wait(timeout)

    def _run(self) -> None:
        while True:
            job = self.jobs.get()
            try:
                job()  # _dispatch logs its own failures; this guards the thread
            except Exception:
                logger.exception("a dispatch raised past its handler")
            with self.lock:
                self.pending -= 1
                if self.pending == 0:
                    self.idle.set()


_lock = threading.Lock()
_current: _Dispatcher | None = None


def _dispatcher() -> _Dispatcher:
    global _current
    with _lock:
        # A forked child inherits the object but not its thread: make anew.
        if _current is None or _current.pid != os.getpid():
            _current = _Dispatcher()
        return _current


def _send(task: str, *args: object) -> None:
    """Publish a message for `workbench.tasks.<task>`, by name: the tasks module calls the
    services, which call this one, so importing it here would close a circle. Celery routes
    by the name (CELERY_TASK_ROUTES), as it does for `delay`."""
    # ignore_result as `delay` sends it (CELERY_TASK_IGNORE_RESULT): no result is kept.
    current_app.send_task(f"workbench.tasks.{task}", args=list(args), ignore_result=True)


def start_sandbox_run(*, sandbox_id: int) -> None:
    """The task's provisioning run for this sandbox (it hands off to the waiting tabs)."""
    _send("provision_sandbox", sandbox_id)


def start_session_open(*, tab_id: UUID, attempt: int) -> None:
    """The tab's own agent session, in its task's ready sandbox."""
    _send("open_tab_session", str(tab_id), attempt)


def start_session_teardown(*, tab_id: UUID) -> None:
    _send("close_tab_session", str(tab_id))


def start_sandbox_destroy(*, sandbox_id: int) -> None:
    _send("destroy_sandbox", sandbox_id)


def start_message_delivery(*, tab_id: UUID) -> None:
    _send("deliver_messages", str(tab_id))


def start_sandbox_release(*, sandbox_id: int) -> None:
    _send("release_sandbox", sandbox_id)
