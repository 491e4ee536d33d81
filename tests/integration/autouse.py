"""Autouse fixtures of every suite that runs against the real services.

Import them into a suite's conftest.py: fixtures are registered per conftest, so they then
apply to that folder only (loaded as a plugin they would apply to the unit tests too), and
the package-scoped `_use_test_redis` is undone after the folder's last test.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Iterator
from functools import partial

import pytest
from django.conf import settings
from django.test import override_settings

from tests.integration.fixtures import drop_celery_connections
from tests.integration.services import IntegrationRun, RedisServer

__all__ = ["_integration_db", "_quiet_workers_before_flush", "_use_test_redis"]


@pytest.fixture(autouse=True)
def _integration_db(transactional_db: None) -> None:
    """Commit for real: workers and Daphne read the same database from other processes."""


@pytest.fixture(autouse=True)
def _quiet_workers_before_flush(_integration_db: None, redis_server: RedisServer) -> Iterator[None]:
    """On PostgreSQL, let the workers fall idle before pytest-django truncates the tables.

    TRUNCATE takes exclusive locks on every table at once; a worker still finishing the
    test's work (a retry, a delivery) would deadlock with it. Set up after the database
    fixture, so this teardown runs before its flush. SQLite's DELETE-based flush just waits.
    """
    yield
    if not os.environ.get("DATABASE_URL"):
        return
    from config.celery import app

    redis_server.client().flushdb()  # queued messages of this test
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        inspect = app.control.inspect(timeout=0.5)
        active = inspect.active() or {}
        scheduled = inspect.scheduled() or {}
        waiting = [entry["request"]["id"] for entries in scheduled.values() for entry in entries]
        if waiting:
            app.control.revoke(waiting)  # countdown retries held in worker memory
        if not any(active.values()) and not waiting:
            return


# Package scope, not session: undone after the suite's last test, so unit tests that run
# later in the same session (tests/unit sorts after tests/integration) are unaffected.
@pytest.fixture(scope="package", autouse=True)
def _use_test_redis(redis_server: RedisServer, integration_run: IntegrationRun) -> Iterator[None]:
    """Point this process's Celery app and channel layer at the session's Redis."""
    from config.celery import app

    layers = copy.deepcopy(settings.CHANNEL_LAYERS)
    default = layers["default"]
    if "channels_redis" not in default["BACKEND"]:
        # Integration tests prove delivery through real Redis, never the in-memory layer.
        default["BACKEND"] = "channels_redis.pubsub.RedisPubSubChannelLayer"
    default["CONFIG"] = {**default.get("CONFIG", {}), "hosts": [redis_server.url]}
    # override_settings sends setting_changed, which makes channels drop cached layers.
    overrides = override_settings(
        REDIS_URL=redis_server.url,
        CELERY_BROKER_URL=redis_server.url,
        CHANNEL_LAYERS=layers,
        WORKBENCH_SANDBOX_ROOT=integration_run.sandbox_root,
    )
    overrides.enable()
    # The Celery app copied Django settings when first configured; set its conf directly.
    saved = {key: app.conf[key] for key in ("broker_url", "task_always_eager")}
    app.conf.broker_url = redis_server.url
    app.conf.task_always_eager = False
    drop_celery_connections(app)
    # After redis_server.restart() pooled connections point at a dead socket; drop them.
    reconnect = partial(drop_celery_connections, app)
    redis_server.after_start.append(reconnect)
    try:
        yield
    finally:
        redis_server.after_start.remove(reconnect)
        drop_celery_connections(app)
        app.conf.update(saved)
        overrides.disable()
