"""Integration tests: real Redis, Celery workers, Daphne and sandbox-agent processes.

Every test here is marked `integration`, runs with `transactional_db` (services in other
processes only see committed rows), and talks to the session's Redis. The process fixtures
(`redis_server`, `celery_worker`, `daphne_server`, `make_celery_worker`, ...) are in
tests/integration/fixtures.py, shared with tests/e2e/.
"""

from __future__ import annotations

from tests.integration.autouse import (  # noqa: F401 (fixtures, registered for this folder)
    _integration_db,
    _quiet_workers_before_flush,
    _use_test_redis,
)
