"""Issue 12, findings 1-3, played by an ordinary member against the real processes: another
tenant's working copy cannot be cloned, an agent in one sandbox cannot reach another
sandbox or the service, and one workspace's hung clones do not stall another's tabs."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from rest_framework.authtoken.models import Token

from core.models import Membership
from sandboxes.agent_client import AgentServerClient
from sandboxes.models import ProvisioningStep, Sandbox
from sandboxes.providers.local import LocalProvider
from sandboxes.services import handle_of
from tasks_app.models import Task
from tests.factories import MembershipFactory, UserFactory, WorkspaceFactory
from tests.helpers import open_tab, wait_until

SECRET = "tenant-b-secret-4242"


class Tenant:
    """A member of a workspace of their own, talking to the real Daphne."""

    def __init__(self, name: str, url: str):
        user = UserFactory(username=name)
        self.workspace = WorkspaceFactory(name=name)
        MembershipFactory(workspace=self.workspace, user=user, role=Membership.Role.OWNER)
        token = Token.objects.create(user=user).key
        self.api = httpx.Client(
            base_url=url, timeout=30, headers={"Authorization": f"Token {token}"}
        )

    def create_task(self, **fields: str) -> httpx.Response:
        return self.api.post(
            f"/api/workspaces/{self.workspace.pk}/tasks/", json={"title": "t", **fields}
        )

    def tab(self, tab_id: str) -> dict:
        return self.api.get(f"/api/tabs/{tab_id}/").json()

    def ready_sandbox(self, timeout: float = 60) -> tuple[dict, Sandbox]:
        task = self.create_task()
        assert task.status_code == 201, task.text
        tab = open_tab(self.api, task.json()["id"])
        wait_until(
            lambda: self.tab(tab["id"])["state"] == "ready",
            timeout=timeout,
            message=lambda: f"tab never ready: {self.tab(tab['id'])}",
        )
        return tab, Sandbox.objects.get(task_id=task.json()["id"], state="ready")


@pytest.fixture
def tenants(daphne_server, integration_run) -> Iterator[tuple[Tenant, Tenant]]:
    a, b = Tenant("tenant-a", daphne_server.url), Tenant("tenant-b", daphne_server.url)
    yield a, b
    a.api.close()
    b.api.close()
    provider = LocalProvider(root=integration_run.sandbox_root)
    for sandbox in Sandbox.objects.all():
        provider.destroy(sandbox.key, handle_of(sandbox) if sandbox.base_url else None)


def run_in(sandbox: Sandbox, script: str) -> dict[str, Any]:
    """What an agent in `sandbox` can do: run a command through its server's process API."""
    with AgentServerClient(sandbox.base_url, sandbox.token, timeout=30) as client:
        return client.run_process("sh", ["-c", script], timeout=20)


def test_another_tenants_working_copy_cannot_be_cloned(tenants, celery_worker, integration_run):
    a, b = tenants
    _, victim = b.ready_sandbox()
    (Path(victim.workdir) / "secrets.env").write_text(SECRET)
    relative = os.path.relpath(victim.workdir, settings.BASE_DIR)  # the workers' cwd
    for repository in (
        victim.workdir,
        f"file://{victim.workdir}",
        str(relative),
        f"{integration_run.sandbox_root}/../sandboxes/{victim.key}/work",
        ".",
        str(settings.BASE_DIR),
        "fd::0",
    ):
        refused = a.create_task(repository=repository)
        assert refused.status_code == 400, (repository, refused.text)
        assert refused.json()["error"]["fields"].get("repository"), refused.text
    assert not Task.objects.filter(workspace=a.workspace).exists()

    # A row written before the policy existed (or by an operator) is refused by the provider.
    stale = Task.objects.create(workspace=a.workspace, title="old", repository=victim.workdir)
    tab = open_tab(a.api, stale.pk)
    failed = wait_until(
        lambda: (t := a.tab(tab["id"]))["state"] == "error" and t,
        timeout=60,
        message="the stale task's tab never failed",
    )
    assert "repository refused" in failed["error_message"]
    attempt = Sandbox.objects.get(task=stale)
    assert not (integration_run.sandbox_root / attempt.key / "work" / "secrets.env").exists()


def test_a_clone_error_names_no_host_detail(tenants, celery_worker, tmp_path):
    a, _ = tenants
    missing = a.create_task(repository=str(tmp_path / "nothing-here"))
    assert missing.status_code == 201
    tab = open_tab(a.api, missing.json()["id"])
    failed = wait_until(
        lambda: (t := a.tab(tab["id"]))["state"] == "error" and t,
        timeout=60,
        message="the clone never failed",
    )
    assert "does not exist, cannot be reached" in failed["error_message"]
    assert str(tmp_path) not in failed["error_message"]
    assert "fatal:" not in failed["error_message"]  # git's own words stay in the log


def test_an_agent_cannot_reach_another_sandbox_or_the_service(tenants, celery_worker, redis_server):
    a, b = tenants
    _, mine = a.ready_sandbox()
    _, theirs = b.ready_sandbox()
    (Path(theirs.workdir) / "secrets.env").write_text(SECRET)
    database = settings.DATABASES["default"]["NAME"]
    probes = {
        "their files": f"cat {theirs.workdir}/secrets.env",
        "their tree": f"ls {Path(theirs.workdir).parent}",
        "service tree": f"ls {settings.BASE_DIR}",
        "database": f"head -c 100 {database}",
        "shadow": "head -c 100 /etc/shadow",
    }
    for what, script in probes.items():
        result = run_in(mine, script)
        assert result["exitCode"] != 0, (what, result)
        assert SECRET not in result["stdout"]

    # No other process is visible, so no other server's token on a command line either.
    listed = run_in(mine, "cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
    assert theirs.token not in listed["stdout"]
    assert mine.token in listed["stdout"]  # the probe does see its own server's processes
    environment = run_in(mine, "cat /proc/self/environ | tr '\\0' '\\n'")["stdout"]
    assert "REDIS_URL" not in environment and "SECRET_KEY" not in environment

    # No network to the service's own ports: Redis, the database (PostgreSQL), Daphne.
    ports = [redis_server.port, settings.DATABASES["default"].get("PORT") or None]
    for port in filter(None, ports):
        reached = run_in(mine, f"echo PING | timeout 5 socat - TCP:127.0.0.1:{port}")
        assert reached["exitCode"] != 0, (port, reached)
        assert "PONG" not in reached["stdout"]

    # And the service still drives its own sandbox.
    assert run_in(mine, "echo hello > note && cat note")["stdout"] == "hello\n"


def test_an_agent_is_not_root_on_the_host(tenants, celery_worker):
    a, _ = tenants
    _, mine = a.ready_sandbox()
    # A user namespace maps the sandbox's uid onto whoever started it: were that root, the
    # host's sysctls (core_pattern: a program run as root on a crash) would be writable.
    wrote = run_in(
        mine,
        "python3 -c \"import os; os.open('/proc/sys/kernel/core_pattern', os.O_WRONLY)\" "
        "2>/dev/null || (: > /proc/sys/kernel/core_pattern) 2>&1",
    )
    assert wrote["exitCode"] != 0, wrote
    made = run_in(mine, "cp /usr/bin/id suid-id && chmod 4755 suid-id && echo made")
    assert made["stdout"] == "made\n"
    on_host = (Path(mine.workdir) / "suid-id").stat()
    assert on_host.st_uid != 0  # a setuid file it makes is not a root shell for the host
    assert run_in(mine, "unshare -Ur true")["exitCode"] != 0  # no nested user namespaces


def test_a_sandbox_cannot_aim_the_service_at_another_socket(tenants, celery_worker, tmp_path):
    a, _ = tenants
    _, mine = a.ready_sandbox()
    bait = socket.socket(socket.AF_UNIX)
    bait_path = tmp_path / "host.sock"
    bait.bind(str(bait_path))
    bait.listen(4)
    bait.settimeout(2)
    try:
        served = mine.base_url.removeprefix("unix:")
        swapped = run_in(mine, f"rm {served} && ln -s {bait_path} {served} && echo swapped")
        assert swapped["stdout"] == "swapped\n"
        provider = LocalProvider(root=Path(mine.workdir).parents[1])
        assert provider.health(handle_of(mine)) is False  # refused, not followed
        with pytest.raises(TimeoutError):
            bait.accept()  # the service never connected to the host's socket
    finally:
        bait.close()


def test_repositories_read_differently_by_git_than_by_a_parser_are_refused(tenants):
    a, _ = tenants
    for repository in (
        "https://%31%32%37.0.0.1:4443/x",
        "git@[127.0.0.1:2222]:x",
        "[127.0.0.1:2222]:x",
        "a@b@127.0.0.1:x",
        "https://github.com@127.0.0.1/x",
        "https://[::ffff:127.0.0.1]/x",
    ):
        refused = a.create_task(repository=repository)
        assert refused.status_code == 400, (repository, refused.text)
    assert not Task.objects.filter(workspace=a.workspace).exists()


class Tarpit:
    """A TCP server that accepts connections and never answers: a clone of it hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def test_one_workspaces_hung_clones_do_not_stall_another_workspaces_tab(
    tenants, celery_worker, make_celery_worker
):
    a, b = tenants
    tarpit = Tarpit()
    # A dedicated provisioning pool of two slots, as small as the Procfile's; private hosts
    # allowed so the tarpit on loopback stands in for a slow host on the internet.
    celery_worker.stop()
    try:
        make_celery_worker(queues="sessions,prompts,celery")
        make_celery_worker(
            queues="provision",
            concurrency=2,
            env={
                "WORKBENCH_MAX_PROVISIONING_PER_WORKSPACE": "1",
                "WORKBENCH_REPOSITORY_ALLOW_PRIVATE_HOSTS": "1",
            },
        )
        hung = [
            Task.objects.create(
                workspace=a.workspace,
                title=f"hang {n}",
                repository=f"https://127.0.0.1:{tarpit.port}/repo{n}.git",
            )
            for n in range(3)
        ]
        for task in hung:
            open_tab(a.api, task.pk)
        wait_until(
            lambda: (
                ProvisioningStep.objects.filter(
                    sandbox__task__in=hung, name="prepare_workspace", outcome="running"
                ).exists()
                and Sandbox.objects.filter(task__in=hung).count() == len(hung)
            ),
            timeout=30,
            message="the hung clones never started",
        )

        # Another tenant's tab is ready in its normal time while those clones hang.
        b.ready_sandbox(timeout=45)
        assert (
            ProvisioningStep.objects.filter(
                sandbox__task__in=hung, name="prepare_workspace", outcome="running"
            ).count()
            == 1
        )
    finally:
        tarpit.close()
        celery_worker.start()
