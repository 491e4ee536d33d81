"""Browser tests: the workbench page in Debian's headless Chromium, driven by Playwright,
against the real Daphne, Celery worker, Redis and sandbox-agent processes
(tests/integration/fixtures.py). Every test here is marked `integration` and `e2e`.

Playwright's sync API keeps an asyncio loop running in this thread while a browser is open,
and Django then refuses ORM calls (SynchronousOnlyOperation). So the rows a test needs are
written by `team` before the browser starts, the browser is closed before pytest-django
flushes the database, and test bodies change things through the REST API, as users do.

Fixtures:
- team: Team                     alice (owner) and bob (member) of one workspace, with tokens,
                                 and carol, who is in no workspace (to be added)
- open_page(member, *, base_url=None, width=1280, height=800) -> WorkbenchPage
                                 a logged-in page in its own browser context
- console: ConsoleErrors         every console error and uncaught exception of those pages;
                                 a test fails if any is left that it did not `allow`
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, sync_playwright
from rest_framework.authtoken.models import Token

from core.models import Membership
from sandboxes.models import Sandbox
from sandboxes.providers.local import LocalProvider
from sandboxes.services import handle_of
from tests.e2e.helpers import WorkbenchPage, log_in
from tests.factories import MembershipFactory, UserFactory, WorkspaceFactory
from tests.integration.autouse import (  # noqa: F401 (fixtures, registered for this folder)
    _integration_db,
    _quiet_workers_before_flush,
    _use_test_redis,
)
from tests.integration.services import CeleryWorker, DaphneServer, IntegrationRun

CHROMIUM = Path(os.environ.get("WORKBENCH_CHROMIUM", "/usr/bin/chromium"))
# We run as root, so no sandbox; and without the background-networking flags Chromium keeps
# calling home (updates, sync, safe browsing), which only fails slowly on a closed network.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Seconds of recorded extra provisioning (a `simulated_delay` step): long enough to see a
# pending tab, read its step and close it; short enough to keep the suite quick.
PROVISION_DELAY = "2"


@dataclass
class Member:
    username: str
    password: str
    token: str


@dataclass
class Team:
    owner: Member
    member: Member
    outsider: Member
    workspace_id: int
    base_url: str
    clients: list[httpx.Client] = field(default_factory=list)

    def api(self, who: Member | None = None) -> httpx.Client:
        """A REST client of `who` (the owner by default) on the folder's Daphne."""
        client = httpx.Client(
            base_url=self.base_url,
            timeout=30,
            headers={"Authorization": f"Token {(who or self.owner).token}"},
        )
        self.clients.append(client)
        return client


@dataclass
class ConsoleErrors:
    """Console errors and uncaught exceptions of every page a test opened."""

    errors: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def watch(self, page: Page, label: str) -> None:
        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                self.errors.append(f"[{label}] console: {message.text}")

        def on_page_error(error: Error) -> None:
            self.errors.append(f"[{label}] uncaught: {error.message}")

        page.on("console", on_console)
        page.on("pageerror", on_page_error)

    def allow(self, pattern: str) -> None:
        """Expected errors, e.g. the browser's own report of a refused websocket."""
        self.allowed.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]


@pytest.fixture(scope="package")
def e2e_worker(
    celery_worker: CeleryWorker,
    child_env: Callable[..., dict[str, str]],
    integration_run: IntegrationRun,
) -> Iterator[CeleryWorker]:
    """The session's worker swapped, for this folder, for one that provisions 2 s slower."""
    celery_worker.stop()
    worker = CeleryWorker(
        log_dir=integration_run.log_dir,
        env=child_env(WORKBENCH_LOCAL_PROVISION_DELAY=PROVISION_DELAY),
        nodename=f"e2e-{os.getpid()}@{socket.gethostname()}",
        label="celery-worker-e2e",
    )
    integration_run.add(worker)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()
        if not celery_worker.alive:
            celery_worker.start()


@pytest.fixture(scope="package")
def e2e_server(
    child_env: Callable[..., dict[str, str]], integration_run: IntegrationRun
) -> Iterator[DaphneServer]:
    """A Daphne of this folder's own: what its pages do leaves the session's untouched."""
    server = DaphneServer(
        log_dir=integration_run.log_dir,
        # Every test logs its members in anew: the per-username login limit (10/min)
        # and the connect limit are for attackers, not for a suite's pace.
        env=child_env(
            WORKBENCH_SOCKET_CONNECT_RATE="600/min",
            WORKBENCH_LOGIN_RATE="600/min",
            WORKBENCH_LOGIN_USERNAME_RATE="600/min",
        ),
        label="daphne-e2e",
    )
    integration_run.add(server)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def team(
    e2e_server: DaphneServer, e2e_worker: CeleryWorker, integration_run: IntegrationRun
) -> Iterator[Team]:
    """alice (owner) and bob (member) of the workspace "Acme", and carol (carol@example.com)
    of none; password "pw" each."""
    workspace = WorkspaceFactory(name="Acme")
    members = []
    for username, role in (
        ("alice", Membership.Role.OWNER),
        ("bob", Membership.Role.MEMBER),
        ("carol", None),
    ):
        user = UserFactory(username=username, email=f"{username}@example.com")
        # Daphne checks the password with Django's default hashers, which do not include
        # the MD5 one this process uses: store a (cheap, few-iteration) PBKDF2 hash.
        hasher = PBKDF2PasswordHasher()
        user.password = hasher.encode("pw", hasher.salt(), iterations=1000)
        user.save(update_fields=["password"])
        if role is not None:
            MembershipFactory(workspace=workspace, user=user, role=role)
        members.append(Member(username, "pw", Token.objects.create(user=user).key))
    team = Team(members[0], members[1], members[2], workspace.pk, e2e_server.url)
    yield team
    for client in team.clients:
        client.close()
    # Stop every sandbox-agent server this test started (the run's teardown would too).
    provider = LocalProvider(root=integration_run.sandbox_root)
    for sandbox in Sandbox.objects.all():
        provider.destroy(sandbox.key, handle_of(sandbox) if sandbox.base_url else None)


@pytest.fixture
def browser(team: Team) -> Iterator[Browser]:
    """Headless Debian chromium; per test, so no asyncio loop outlives it (see above)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make setup` installs Debian's chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def console() -> Iterator[ConsoleErrors]:
    """Errors the pages logged; any the test did not allow fails it."""
    errors = ConsoleErrors()
    yield errors
    unexpected = errors.unexpected()
    assert not unexpected, "the page logged errors:\n" + "\n".join(unexpected)


@pytest.fixture
def open_page(
    browser: Browser, team: Team, console: ConsoleErrors
) -> Iterator[Callable[..., WorkbenchPage]]:
    """`open_page(member, *, base_url=None, width=1280, height=800)`: a logged-in page."""
    contexts = []

    def open_(
        who: Member, *, base_url: str | None = None, width: int = 1280, height: int = 800
    ) -> WorkbenchPage:
        context = browser.new_context(
            base_url=base_url or team.base_url, viewport={"width": width, "height": height}
        )
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        console.watch(page, who.username)
        log_in(page, who.username, who.password)
        return WorkbenchPage(page)

    yield open_
    for context in contexts:
        context.close()
