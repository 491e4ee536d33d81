"""Upkeep that must not hang on one process: every Celery worker runs it, one at a time.

Each worker's main process runs a thread that, every WORKBENCH_UPKEEP_INTERVAL seconds,
takes a short lease in Redis (a redis-py Lock: SET NX PX with an owner token, so one
worker at a time across hosts) and, while holding it, reconciles (`reconciler.reconcile`)
and watches the ready sandboxes (`services.sandboxes_watch`). Beat still schedules the same
work, so losing beat, or any worker but the last, delays no repair.

The lease lives LEASE_SECONDS past its last renewal and is renewed while the round runs,
so two slow rounds never overlap, yet a worker killed mid-round (SIGKILL, OOM) holds the
others back at most LEASE_SECONDS, and a hung round at most MAX_ROUND_SECONDS. A warm
shutdown waits for the round in progress (up to SHUTDOWN_WAIT_SECONDS) and releases it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import close_old_connections

if TYPE_CHECKING:
    import redis

logger = logging.getLogger(__name__)

LEASE_KEY = "workbench:upkeep"
LEASE_SECONDS = 10.0
# A round still running after this long is taken as hung (a health check or a lock that
# never answers): its lease is no longer renewed, so the others' upkeep resumes.
MAX_ROUND_SECONDS = 60.0
# How long a warm shutdown waits for a round in progress before leaving its lease to lapse.
SHUTDOWN_WAIT_SECONDS = 10.0


def run_once(client: redis.Redis, owner: str) -> bool:
    """One round if this process wins the lease; True when it ran."""
    from redis.exceptions import LockError

    from workbench import reconciler, services

    lease = client.lock(LEASE_KEY, timeout=LEASE_SECONDS, blocking=False, thread_local=False)
    if not lease.acquire(token=owner):
        return False
    done = threading.Event()
    threading.Thread(target=_renew, args=(lease, done), name="upkeep-lease", daemon=True).start()
    close_old_connections()
    try:
        reconciler.reconcile()
        services.sandboxes_watch()
    finally:
        done.set()
        close_old_connections()
        try:
            lease.release()
        except LockError:
            logger.warning("the upkeep lease lapsed during a round; another may have overlapped")
    return True


def _renew(lease: redis.lock.Lock, done: threading.Event) -> None:
    """Push the lease's expiry out to LEASE_SECONDS from now, a few times a lease, until
    the round is done, the lease is lost, or the round has run MAX_ROUND_SECONDS."""
    from redis.exceptions import LockError, RedisError

    give_up = time.monotonic() + MAX_ROUND_SECONDS
    while not done.wait(LEASE_SECONDS / 3):
        if time.monotonic() >= give_up:
            logger.warning(
                "an upkeep round ran %.0fs; no longer holding its lease", MAX_ROUND_SECONDS
            )
            return
        try:
            lease.extend(LEASE_SECONDS, replace_ttl=True)
        except LockError:
            return
        except RedisError as exc:
            logger.warning("cannot renew the upkeep lease (%s)", exc)


class Upkeep:
    """This process's upkeep thread."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if settings.WORKBENCH_UPKEEP_INTERVAL > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="upkeep", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = SHUTDOWN_WAIT_SECONDS) -> None:
        """Let a round in progress finish (and release its lease), then end the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        import redis

        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5)
        owner = f"{socket.gethostname()}:{os.getpid()}"
        while not self._stop.wait(settings.WORKBENCH_UPKEEP_INTERVAL):
            try:
                run_once(client, owner)
            except Exception:
                # Redis or the database away for a moment: the next round tries again.
                logger.exception("upkeep round failed")


_upkeep = Upkeep()


def start() -> None:
    """Start this process's upkeep thread (a worker's main process, once ready)."""
    _upkeep.start()


def stop() -> None:
    """End this process's upkeep thread (a worker's warm shutdown)."""
    _upkeep.stop()
