"""Fixtures shared by every suite: users, a workspace, and API clients."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from unittest import mock

import pytest
from rest_framework.test import APIClient

from core import publish
from core.models import Membership, Workspace
from tests.factories import MembershipFactory, UserFactory, WorkspaceFactory

# The real service processes, one set per session, shared by tests/integration/ and tests/e2e/.
pytest_plugins = ["tests.integration.fixtures"]


# The longest file (about 3.5 minutes) first: with the tests dealt out a file at a time
# (make test: pytest-xdist, --dist loadfile), one started last would leave the other process
# idle at the end.
LONGEST_FIRST = "test_bench_service_smoke.py"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name != LONGEST_FIRST)  # stable: the rest in order


def pytest_configure(config: pytest.Config) -> None:
    """The per-run SQLite test database lives under WORKBENCH_VAR_DIR: make sure it exists."""
    from django.conf import settings

    settings.VAR_DIR.mkdir(parents=True, exist_ok=True)


@pytest.fixture
def alice(db: None):
    """The workspace owner."""
    return UserFactory(username="alice")


@pytest.fixture
def bob(db: None):
    """A plain member of alice's workspace."""
    return UserFactory(username="bob")


@pytest.fixture
def charlie(db: None):
    """An outsider: a member of no workspace of alice's."""
    return UserFactory(username="charlie")


@pytest.fixture
def workspace(alice, bob) -> Workspace:
    """Alice's workspace, with bob as a member."""
    ws = WorkspaceFactory(name="Alice's")
    MembershipFactory(workspace=ws, user=alice, role=Membership.Role.OWNER)
    MembershipFactory(workspace=ws, user=bob, role=Membership.Role.MEMBER)
    return ws


@pytest.fixture
def api_client() -> APIClient:
    """An unauthenticated DRF client; call force_authenticate or use client_for."""
    return APIClient()


@pytest.fixture
def client_for():
    """Build a DRF client authenticated as the given user."""

    def build(user) -> APIClient:
        client = APIClient()
        client.force_authenticate(user)
        return client

    return build


class Dispatched:
    """What services dispatched instead of sending to a broker: `.runs` (provisioning runs,
    start_sandbox_run) and `.sessions` (session steps, start_session_open)."""

    def __init__(self, runs: mock.MagicMock, sessions: mock.MagicMock):
        self.runs, self.sessions = runs, sessions

    @property
    def call_count(self) -> int:
        return self.runs.call_count + self.sessions.call_count

    def assert_not_called(self) -> None:
        self.runs.assert_not_called()
        self.sessions.assert_not_called()


@pytest.fixture
def dispatched() -> Iterator[Dispatched]:
    """Capture provisioning runs and session steps instead of sending them (unit tests)."""
    with (
        mock.patch("workbench.workflows.start_sandbox_run") as runs,
        mock.patch("workbench.workflows.start_session_open") as sessions,
    ):
        yield Dispatched(runs, sessions)


@pytest.fixture(autouse=True)
def _answered_error_codes_are_documented(monkeypatch) -> Iterator[None]:
    """Every error code an operation answers in a test is one the OpenAPI schema lists for
    it (tests/support/error_codes.py); in-process requests only (unit tests)."""
    from rest_framework.settings import api_settings

    from tests.support import error_codes

    answers: list[tuple[str, str, int, str]] = []
    handler = error_codes.recorder(api_settings.EXCEPTION_HANDLER, answers)
    monkeypatch.setattr(api_settings, "EXCEPTION_HANDLER", handler)
    yield
    missing = error_codes.undocumented(answers)
    assert not missing, "codes the schema does not list (core/error_codes.py):\n" + "\n".join(
        missing
    )


@pytest.fixture(autouse=True)
def _fresh_log_ids() -> None:
    """Each test starts with no ids bound, as each request and Celery task does: services
    called outside either (unit tests) bind ids that would otherwise reach the next test's
    lines in this process, whichever test that is (pytest-xdist deals them out)."""
    from core import logs

    logs.start()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    """PBKDF2 costs ~0.1 s a user; tests do not need it."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _local_cache(request: pytest.FixtureRequest, settings) -> Iterator[None]:
    """Unit tests count throttles in a fresh in-process cache, not in Redis."""
    from django.core.cache import cache

    if request.node.get_closest_marker("integration"):
        yield  # the service processes count in the test Redis
        return
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache.clear()
    yield


@pytest.fixture(autouse=True)
def _in_memory_channel_layer(request: pytest.FixtureRequest, settings) -> Iterator[None]:
    """Unit tests publish to the in-memory layer; integration tests keep Redis."""
    if request.node.get_closest_marker("integration"):
        yield
        return
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    publish.reset_publisher()
    yield
    channel_layers.backends.clear()
    publish.reset_publisher()


@pytest.fixture(autouse=True, scope="session")
def _snapshots_on_threads() -> None:
    """Consumers run in the test process build snapshots on threads: a builder process could
    not see their test database (in memory, or inside a test's transaction). The Daphnes the
    integration tests start build in processes, as deployed (workbench/snapshots.py)."""
    from django.conf import settings

    settings.WORKBENCH_SNAPSHOT_PROCESSES = 0


def _background_reads_finished(timeout: float = 10.0) -> None:
    """Wait until the snapshot and hub pools ran everything submitted so far: a socket's
    read outlives a test whose communicator gave up on it, and one still running when the
    next flush TRUNCATEs every table deadlocks with it on PostgreSQL (each locks the
    tables in its own order). All the pool's threads meeting at a barrier means every
    earlier job is done (they are taken in order)."""
    from workbench import fanout, snapshots

    for pool in (snapshots._pool, fanout._pool):
        if pool is None:
            continue
        barrier = threading.Barrier(pool._max_workers + 1, timeout=timeout)
        for _ in range(pool._max_workers):
            pool.submit(_meet, barrier)
        _meet(barrier)


def _meet(barrier: threading.Barrier) -> None:
    with contextlib.suppress(threading.BrokenBarrierError):  # a read stuck past the timeout
        barrier.wait()


@pytest.fixture(autouse=True, scope="session")
def _no_reads_across_the_flush() -> Iterator[None]:
    """A transactional test's flush waits for the background reads (see above)."""
    from django.test import TransactionTestCase

    flush = TransactionTestCase._fixture_teardown

    def after_background_reads(self: TransactionTestCase) -> None:
        _background_reads_finished()
        flush(self)

    with mock.patch.object(TransactionTestCase, "_fixture_teardown", after_background_reads):
        yield
