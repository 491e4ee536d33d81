"""Timing hooks for benchmark runs (installed by the `bench` app, i.e. only under
bench.settings). Each adds one Redis RPUSH (about 0.1 ms) per event it records.

- Every Celery message carries the time it was published (`bench_sent_at` header); when a
  worker starts the task it records (task, tab, retries, sent, started): enqueue-to-start.
- The local provider's `create_session` is timed: the provider's own share of opening a
  session (its provisioning steps are already recorded as ProvisioningStep rows).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Any

TASKS_KEY = "bench:tasks"
SESSIONS_KEY = "bench:sessions"
SENT_HEADER = "bench_sent_at"

_client: Any = None
_client_pid = 0


def _redis() -> Any:
    """One client per process (Celery forks its pool after this module is imported)."""
    global _client, _client_pid
    if _client is None or _client_pid != os.getpid():
        import redis
        from django.conf import settings

        _client = redis.Redis.from_url(settings.REDIS_URL)
        _client_pid = os.getpid()
    return _client


def _record(key: str, row: dict[str, Any]) -> None:
    with contextlib.suppress(Exception):  # a benchmark hook must never break the service
        _redis().rpush(key, json.dumps(row))


def _stamp_publish(headers: dict | None = None, **_: Any) -> None:
    if headers is not None:
        headers[SENT_HEADER] = time.time()


def _record_start(task_id: str = "", task: Any = None, args: Any = (), **_: Any) -> None:
    started = time.time()
    request = task.request
    sent = getattr(request, SENT_HEADER, None) or (request.headers or {}).get(SENT_HEADER)
    _record(
        TASKS_KEY,
        {
            "task": task.name,
            "arg": str(args[0]) if args else "",
            "retries": request.retries or 0,
            "eta": str(request.eta or ""),
            "sent": sent,
            "started": started,
        },
    )


def install() -> None:
    from celery.signals import before_task_publish, task_prerun

    from sandboxes.providers.local import LocalProvider

    before_task_publish.connect(_stamp_publish, weak=False)
    task_prerun.connect(_record_start, weak=False)

    original = LocalProvider.create_session
    if getattr(original, "bench_timed", False):
        return

    def create_session(self: LocalProvider, handle: Any, **kwargs: Any) -> str:
        started = time.time()
        try:
            return original(self, handle, **kwargs)
        finally:
            _record(
                SESSIONS_KEY,
                {"server_id": kwargs.get("server_id"), "started": started, "ended": time.time()},
            )

    create_session.bench_timed = True  # type: ignore[attr-defined]
    LocalProvider.create_session = create_session  # type: ignore[method-assign]
