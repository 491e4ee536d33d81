"""Liveness and readiness endpoints for load balancers and operators."""

from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

from workbench.snapshots import builders_check

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


def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: the database, Redis and at least one Celery worker answer, and this
    process's snapshot builders have started (where it has builders).

    One check at a time per process: a probe that comes while one runs gets the last answer
    at once. Why: a check holds a request thread for its worker ping's whole second, and
    anyone may probe, so a flood of probes held every WORKBENCH_REQUEST_THREADS thread and
    each API request queued behind them.
    """
    global _last
    if not _checking.acquire(blocking=_last is None):  # the first answer is worth the wait
        assert _last is not None
        checks, ready = _last
    else:
        try:
            checks = _check()
            ready = all(value == "ok" for value in checks.values())
            _last = (checks, ready)
        finally:
            _checking.release()
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503
    )


def _check() -> dict[str, str]:
    import redis

    from config.celery import app

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
        replies = []
        if checks["redis"] == "ok":
            # A connection of its own, not the pool's: a pooled one opened before a Redis
            # restart fails the first ping after it (a 503 with the worker answering).
            with app.connection_for_write() as broker:
                replies = app.control.ping(timeout=1.0, connection=broker)
        checks["worker"] = _passed("worker") if replies else _failed("worker", "no worker answered")
    except Exception as exc:
        checks["worker"] = _failed("worker", exc)
    builders = builders_check()
    if builders is not None:
        checks["builders"] = builders
    return checks
