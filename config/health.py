"""Liveness and readiness endpoints for load balancers and operators."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

from workbench.snapshots import builders_check

if TYPE_CHECKING:
    from kombu import Connection

logger = logging.getLogger(__name__)


_failing: set[str] = set()  # checks whose failure is logged, until they pass again


def _failed(check: str, exc: Exception | str) -> str:
    """The check's answer (an exception's type only: the body is public), and its cause in
    the log for the operator, once per outage rather than at every probe."""
    if check not in _failing:
        _failing.add(check)
        logger.warning("readiness: the %s check fails: %r", check, exc)
    return f"error: {exc if isinstance(exc, str) else type(exc).__name__}"


def _passed(check: str) -> str:
    if check in _failing:
        _failing.discard(check)
        logger.info("readiness: the %s check passes again", check)
    return "ok"


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers."""
    return JsonResponse({"status": "ok"})


_checking = threading.Lock()
_last: tuple[dict[str, str], bool] | None = None  # the last check's answers, and whether ready
_check_started = 0.0  # time.monotonic() when the running (or last) check began
LAST_ANSWERS_FOR = 3.0  # s: a running check's predecessor answers for it this long


def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: the database, Redis and at least one Celery worker answer, and this
    process's snapshot builders have started (where it has builders).

    One check at a time per process: a probe that comes while one runs gets the last answer
    at once, for LAST_ANSWERS_FOR seconds; past that, or before any answer, it is 503. Why:
    a check holds a request thread for its worker ping's whole second, and anyone may probe,
    so a flood of probes held every WORKBENCH_REQUEST_THREADS thread and each API request
    queued behind them.
    """
    checks, ready = _answer()
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503
    )


def _answer() -> tuple[dict[str, str], bool]:
    global _last, _check_started
    if _checking.acquire(blocking=False):
        try:
            _check_started = time.monotonic()
            checks = _check()
            _last = (checks, all(value == "ok" for value in checks.values()))
            return _last
        finally:
            _checking.release()
    running = time.monotonic() - _check_started
    if _last is not None and running < LAST_ANSWERS_FOR:
        return _last
    # A check stuck (a database past its pool timeout) must not keep a 200 standing.
    return {"check": f"error: running for {running:.0f} s"}, False


def _check() -> dict[str, str]:
    import redis

    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = _passed("database")
    except Exception as exc:
        checks["database"] = _failed("database", exc)
    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1).ping()
        checks["redis"] = _passed("redis")
    except Exception as exc:
        checks["redis"] = _failed("redis", exc)
    try:
        replies = _ping_workers() if checks["redis"] == "ok" else []
        checks["worker"] = _passed("worker") if replies else _failed("worker", "no worker answered")
    except Exception as exc:
        checks["worker"] = _failed("worker", exc)
    builders = builders_check()
    if builders is not None:
        checks["builders"] = builders
    return checks


_broker: Connection | None = None  # readiness's own, used under _checking only


def _ping_workers() -> list[dict[str, object]]:
    """The workers' replies to a ping (it waits out its 1 s: with `limit`, kombu reads that
    many messages, not replies, and a late reply to the last ping could use one up).

    Its replies come on a broker connection of its own, kept between checks (each new one
    costs the process a file descriptor until garbage collection). A connection opened
    before a Redis restart fails its first ping after it (a 503 with the worker answering):
    that fails once, and the ping is tried again on a new connection.
    """
    try:
        return _ping_on_kept_connection()
    except Exception:
        return _ping_on_kept_connection()


def _ping_on_kept_connection() -> list[dict[str, object]]:
    global _broker
    from config.celery import app

    if _broker is None:
        _broker = app.connection_for_write()
    try:
        return app.control.ping(timeout=1.0, connection=_broker)
    except Exception:
        _broker.release()
        _broker = None
        raise
