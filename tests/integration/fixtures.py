"""The real service processes (Redis, Celery workers, Daphne) for the suites that need them.

A plugin, loaded once by tests/conftest.py (`pytest_plugins`), so tests/integration/ and
tests/e2e/ share one set of session processes. Their autouse fixtures (transactional
database, this process pointed at the test Redis) are in tests/integration/autouse.py,
imported by each suite's conftest so they apply to that folder only.

Tests under tests/integration/ are marked `integration`; under tests/e2e/, `integration` and
`e2e`.

Fixtures (processes are started lazily, by the first test that asks, and stopped at the end
of the session; a failing test's report includes what each service logged meanwhile):
- redis_server: RedisServer            .url, .port, .client(), .stop(), .start(), .restart()
- celery_worker: CeleryWorker          .nodename, .pid, .kill(sig), .restart(), .read_log()
- daphne_server: DaphneServer          .url, .ws_url, .restart()
- child_env(**overrides) -> dict       the environment those processes get
- make_celery_worker(env=None, *, concurrency=2), make_daphne_server(env=None): extra
  processes with environment overrides, stopped after the test
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path

import kombu.pools
import pytest
from celery import Celery
from django.conf import settings

from tests.integration.services import (
    RUN_MARKER_VAR,
    CeleryWorker,
    DaphneServer,
    IntegrationRun,
    RedisServer,
    build_child_env,
)

INTEGRATION_DIR = Path(__file__).resolve().parent
E2E_DIR = INTEGRATION_DIR.parent / "e2e"
RUN_KEY = pytest.StashKey[IntegrationRun]()
LOG_OFFSETS_KEY = pytest.StashKey[dict[Path, int]]()

ChildEnv = Callable[..., dict[str, str]]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests under tests/integration/ `integration`; under tests/e2e/ also `e2e`."""
    for item in items:
        parents = item.path.resolve().parents
        if E2E_DIR in parents:
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.e2e)
        elif INTEGRATION_DIR in parents:
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On failure, attach what each service logged during the test to the report."""
    report = yield
    run = item.config.stash.get(RUN_KEY, None)
    if report.failed and run is not None:
        since = item.stash.get(LOG_OFFSETS_KEY, {})
        report.sections.extend(run.log_sections(since))
    return report


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Note where each service log ends, before fixtures run: a failure shows only new lines."""
    run = item.config.stash.get(RUN_KEY, None)
    item.stash[LOG_OFFSETS_KEY] = run.log_offsets() if run else {}


@pytest.fixture(scope="session")
def integration_run(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[IntegrationRun]:
    """The session's scratch directory and process list; stops everything at the end."""
    run = IntegrationRun(root=tmp_path_factory.mktemp("integration"), marker=uuid.uuid4().hex)
    run.sandbox_root.mkdir(mode=0o711, exist_ok=True)
    run.sandbox_root.chmod(0o711)  # confined sandboxes' own uids traverse it
    request.config.stash[RUN_KEY] = run
    # A CI timeout sends SIGTERM, which would end pytest without teardown and leave every
    # service running (each has its own session); turn it into an interrupt pytest handles.
    previous = signal.getsignal(signal.SIGTERM)
    if previous == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield run
    finally:
        run.shutdown()
        shutil.rmtree(run.sandbox_root, ignore_errors=True)
        if previous == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"received signal {signum}")


@pytest.fixture(scope="session")
def redis_server(integration_run: IntegrationRun) -> Iterator[RedisServer]:
    """A private redis-server on a free port; `.url`, `.restart()`, `.stop()`, `.start()`."""
    env = {**os.environ, RUN_MARKER_VAR: integration_run.marker}
    server = RedisServer(
        log_dir=integration_run.log_dir, data_dir=integration_run.root / "redis", env=env
    )
    integration_run.add(server)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def child_env(
    django_db_setup: None, redis_server: RedisServer, integration_run: IntegrationRun
) -> ChildEnv:
    """`child_env(**overrides)`: the environment for a service process (None removes a key)."""
    # Read after django_db_setup: creating the test database renames it in settings.
    database_name = str(settings.DATABASES["default"]["NAME"])

    def make(**overrides: str | None) -> dict[str, str]:
        return build_child_env(
            redis_url=redis_server.url,
            run_dir=integration_run.root,
            database_name=database_name,
            marker=integration_run.marker,
            extra=overrides,
        )

    return make


def drop_celery_connections(app: Celery) -> None:
    """Forget pooled broker connections so the next publish opens a fresh one."""
    # Private attributes: the same reset Celery does after fork (Celery._after_fork).
    if app._pool is not None:
        app._pool.force_close_all()
    app._pool = None
    amqp = app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None
    # Celery publishes through kombu's process-wide pools, keyed by broker URL: a restarted
    # Redis has the same URL, so those pools would hand out connections to the dead server.
    kombu.pools.reset()


def _start(run: IntegrationRun, process: CeleryWorker | DaphneServer) -> None:
    run.add(process)
    process.start()


@pytest.fixture(scope="session")
def celery_worker(child_env: ChildEnv, integration_run: IntegrationRun) -> Iterator[CeleryWorker]:
    """A `celery -A config worker -c 2` on the test Redis; `.nodename`, `.kill()`, `.restart()`."""
    worker = CeleryWorker(
        log_dir=integration_run.log_dir,
        env=child_env(),
        nodename=f"itest-{os.getpid()}@{_hostname()}",
    )
    _start(integration_run, worker)
    yield worker
    worker.stop()


@pytest.fixture(scope="session")
def daphne_server(child_env: ChildEnv, integration_run: IntegrationRun) -> Iterator[DaphneServer]:
    """Daphne serving config.asgi:application on a free port; `.url`, `.ws_url`."""
    server = DaphneServer(log_dir=integration_run.log_dir, env=child_env())
    _start(integration_run, server)
    yield server
    server.stop()


@pytest.fixture
def make_celery_worker(
    child_env: ChildEnv, integration_run: IntegrationRun
) -> Iterator[Callable[..., CeleryWorker]]:
    """`make_celery_worker(env={...}, concurrency=2, queues="a,b")`: an extra worker (every work
    queue unless `queues` names some), stopped after the test."""
    started: list[CeleryWorker] = []

    def make(
        env: Mapping[str, str | None] | None = None,
        *,
        concurrency: int = 2,
        queues: str | None = None,
    ) -> CeleryWorker:
        label = f"celery-worker-{uuid.uuid4().hex[:8]}"
        worker = CeleryWorker(
            log_dir=integration_run.log_dir,
            env=child_env(**(env or {})),
            nodename=f"{label}@{_hostname()}",
            concurrency=concurrency,
            label=label,
            extra_args=["-Q", queues] if queues else (),
        )
        started.append(worker)
        _start(integration_run, worker)
        return worker

    yield make
    for worker in reversed(started):
        worker.stop()


@pytest.fixture
def make_daphne_server(
    child_env: ChildEnv, integration_run: IntegrationRun
) -> Iterator[Callable[..., DaphneServer]]:
    """`make_daphne_server(env={...})`: an extra Daphne, stopped after the test."""
    started: list[DaphneServer] = []

    def make(env: Mapping[str, str | None] | None = None) -> DaphneServer:
        server = DaphneServer(
            log_dir=integration_run.log_dir,
            env=child_env(**(env or {})),
            label=f"daphne-{uuid.uuid4().hex[:8]}",
        )
        started.append(server)
        _start(integration_run, server)
        return server

    yield make
    for server in reversed(started):
        server.stop()


def _hostname() -> str:
    return socket.gethostname()


@pytest.fixture
def member(daphne_server: DaphneServer, integration_run: IntegrationRun) -> Iterator[dict]:
    """A workspace owner on the session's Daphne: workspace id, API token, HTTP and ws URLs.

    Stops every sandbox-agent server the test started afterwards.
    """
    from rest_framework.authtoken.models import Token

    from core.models import Membership
    from sandboxes.models import Sandbox
    from sandboxes.providers.local import LocalProvider
    from sandboxes.services import handle_of
    from tests.factories import MembershipFactory, UserFactory, WorkspaceFactory

    user = UserFactory(username="member")
    workspace = WorkspaceFactory(name="Integration")
    MembershipFactory(workspace=workspace, user=user, role=Membership.Role.OWNER)
    token = Token.objects.create(user=user).key
    ws_url = daphne_server.url.replace("http://", "ws://") + f"/ws/workspaces/{workspace.pk}/"
    yield {"workspace": workspace.pk, "token": token, "http": daphne_server.url, "ws": ws_url}
    provider = LocalProvider(root=integration_run.sandbox_root)
    for sandbox in Sandbox.objects.all():
        provider.destroy(sandbox.key, handle_of(sandbox) if sandbox.base_url else None)
