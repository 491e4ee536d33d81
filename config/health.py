"""Liveness and readiness endpoints for load balancers and operators."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

from workbench.snapshots import builders_check

logger = logging.getLogger(__name__)


def _failed(check: str, exc: Exception) -> str:
    """The check's answer (the exception's type only: the body is public), and its cause in
    the log for the operator."""
    logger.warning("readiness: %s check failed: %r", check, exc)
    return f"error: {type(exc).__name__}"


def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers."""
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: the database, Redis and at least one Celery worker answer, and this
    process's snapshot builders have started (where it has builders)."""
    import redis

    from config.celery import app

    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = _failed("database", exc)
    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1).ping()
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = _failed("redis", exc)
    try:
        replies = app.control.ping(timeout=1.0) if checks["redis"] == "ok" else []
        checks["worker"] = "ok" if replies else "error: no worker answered"
    except Exception as exc:
        checks["worker"] = _failed("worker", exc)
    builders = builders_check()
    if builders is not None:
        checks["builders"] = builders
    ready = all(value == "ok" for value in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503
    )
