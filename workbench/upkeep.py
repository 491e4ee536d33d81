"""Upkeep that must not hang on one process: every Celery worker runs it, one at a time.

Each worker's main process runs a thread that, every WORKBENCH_UPKEEP_INTERVAL seconds,
takes a short lease in Redis (SET NX PX, so one worker at a time across hosts) and, while
holding it, reconciles (`reconciler.reconcile`) and watches the ready sandboxes
(`services.sandboxes_watch`). Beat still schedules the same work, so losing beat, or any
worker but the last, delays no repair.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger(__name__)

LEASE_KEY = "workbench:upkeep"
# The longest a round may hold the lease (a hung health check cannot keep it forever).
ROUND_SECONDS = 60
# Delete the key only if this owner still holds it.
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end"


def run_once(client: object, owner: str) -> bool:
    """One round if this process wins the lease; True when it ran."""
    from workbench import reconciler, services

    # Held for the whole round (two slow rounds never overlap) and released by its owner;
    # each worker then waits an interval, so rounds come about one an interval.
    if not client.set(LEASE_KEY, owner, nx=True, ex=ROUND_SECONDS):  # type: ignore[attr-defined]
        return False
    close_old_connections()
    try:
        reconciler.reconcile()
        services.sandboxes_watch()
    finally:
        close_old_connections()
        client.eval(_RELEASE, 1, LEASE_KEY, owner)  # type: ignore[attr-defined]
    return True


def _loop(stop: threading.Event) -> None:
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5)
    owner = f"{socket.gethostname()}:{os.getpid()}"
    while not stop.wait(settings.WORKBENCH_UPKEEP_INTERVAL):
        try:
            run_once(client, owner)
        except Exception:
            # Redis or the database away for a moment: the next round tries again.
            logger.exception("upkeep round failed")


def start() -> threading.Event:
    """Start this process's upkeep thread; set the returned event to stop it."""
    stop = threading.Event()
    if settings.WORKBENCH_UPKEEP_INTERVAL > 0:
        threading.Thread(target=_loop, args=(stop,), name="upkeep", daemon=True).start()
    return stop
