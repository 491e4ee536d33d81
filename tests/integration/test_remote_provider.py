"""Issue 8: the remote provider, against a sandbox-agent server started as its own process
(standing in for a remote host), gives the same tab states, steps and errors as local."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rest_framework.authtoken.models import Token

from core.models import Membership
from sandboxes.agent_client import AgentServerClient
from sandboxes.models import Sandbox
from sandboxes.providers.local import _free_port, sandbox_agent_binary
from tests.factories import MembershipFactory, UserFactory, WorkspaceFactory
from tests.helpers import wait_until


@pytest.fixture
def remote_host(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A sandbox-agent server in its own process, home and directory: the 'remote' host."""
    port, token = _free_port(), secrets.token_hex(16)
    home = tmp_path / "remote-home"
    home.mkdir()
    log = (tmp_path / "remote.log").open("wb")
    proc = subprocess.Popen(
        [
            sandbox_agent_binary(),
            "server",
            "--no-telemetry",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            f"--token={token}",
        ],
        cwd=tmp_path,
        env={**os.environ, "HOME": str(home)},
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        with AgentServerClient(url, token) as client:
            wait_until(client.health, timeout=30, message="the remote host never came up")
        yield {"url": url, "token": token, "root": str(tmp_path / "remote-sandboxes")}
    finally:
        proc.kill()
        proc.wait(10)
        log.close()


@pytest.fixture
def remote_stack(remote_host, celery_worker, make_celery_worker, make_daphne_server):
    """A Daphne and a worker configured with both providers; the session worker paused."""
    env = {
        "WORKBENCH_PROVIDERS": "local,remote",
        "WORKBENCH_REMOTE_SERVERS": json.dumps(
            [{"url": remote_host["url"], "token": remote_host["token"]}]
        ),
        "WORKBENCH_REMOTE_WORKDIR_ROOT": remote_host["root"],
        "WORKBENCH_HEALTH_TIMEOUT": "3",
    }
    celery_worker.stop()
    try:
        make_celery_worker(env=env)
        yield make_daphne_server(env=env)
    finally:
        celery_worker.start()
        shutil.rmtree(remote_host["root"], ignore_errors=True)


@pytest.fixture
def api(remote_stack) -> Iterator[dict[str, Any]]:
    user = UserFactory(username="remote-user")
    workspace = WorkspaceFactory(name="Remote")
    MembershipFactory(workspace=workspace, user=user, role=Membership.Role.OWNER)
    token = Token.objects.create(user=user).key
    with httpx.Client(
        base_url=remote_stack.url, timeout=30, headers={"Authorization": f"Token {token}"}
    ) as client:
        yield {"client": client, "workspace": workspace.pk}


def open_tab(api: dict, **task: str) -> tuple[dict, dict]:
    client = api["client"]
    created = client.post(
        f"/api/workspaces/{api['workspace']}/tasks/", json={"title": "remote", **task}
    )
    assert created.status_code == 201, created.text
    tab = client.post(f"/api/tasks/{created.json()['id']}/tabs/", json={}).json()
    assert tab["state"] == "pending_provision"
    return created.json(), tab


def final(api: dict, tab: dict) -> dict:
    client = api["client"]
    return wait_until(
        lambda: (
            (t := client.get(f"/api/tabs/{tab['id']}/").json())["state"] in {"ready", "error"} and t
        ),
        timeout=60,
        message="the remote tab never settled",
    )


def test_a_remote_sandbox_gives_a_ready_tab_that_answers_prompts(api, remote_host):
    task, tab = open_tab(api, provider="remote")
    ready = final(api, tab)
    assert ready["state"] == "ready" and ready["session_id"]
    steps = api["client"].get(f"/api/tasks/{task['id']}/").json()["sandbox"]["steps"]
    assert [(s["name"], s["outcome"]) for s in steps] == [
        ("connect", "succeeded"),
        ("prepare_workspace", "succeeded"),
        ("install_agent", "succeeded"),
    ]
    sandbox = Sandbox.objects.get(pk=ready["sandbox"])
    assert sandbox.base_url == remote_host["url"]
    assert (Path(sandbox.workdir) / ".git").is_dir()  # made on the host through its API
    assert Path(sandbox.workdir).is_relative_to(remote_host["root"])

    client = api["client"]
    assert (
        client.post(f"/api/tabs/{tab['id']}/messages/", json={"text": "hello remote"}).status_code
        == 202
    )
    reply = wait_until(
        lambda: (
            (m := client.get(f"/api/tabs/{tab['id']}/messages/").json()["results"])
            and m[-1]["state"] == "complete"
            and m[-1]
        ),
        timeout=30,
        message="no reply from the remote session",
    )
    assert "hello remote" in reply["text"]

    assert client.post(f"/api/tasks/{task['id']}/archive/").status_code == 200
    wait_until(
        lambda: not Path(sandbox.workdir).exists(),
        timeout=30,
        message="archiving did not remove the remote working copy",
    )


def test_a_remote_clone_failure_is_the_same_error_as_a_local_one(api, tmp_path):
    _, remote = open_tab(api, provider="remote", repository=str(tmp_path / "missing"))
    _, local = open_tab(api, provider="local", repository=str(tmp_path / "missing"))
    remote_error, local_error = final(api, remote), final(api, local)
    for tab in (remote_error, local_error):
        assert (tab["state"], tab["error_code"]) == ("error", "provision_failed")
        assert "prepare_workspace" in tab["error_message"]
        assert "does not exist" in tab["error_message"]


def test_an_unreachable_remote_host_fails_the_tab_at_connect(
    celery_worker, make_celery_worker, make_daphne_server
):
    env = {
        "WORKBENCH_PROVIDERS": "local,remote",
        "WORKBENCH_REMOTE_SERVERS": json.dumps(
            [{"url": f"http://127.0.0.1:{_free_port()}", "token": "t"}]
        ),  # nobody there
        "WORKBENCH_HEALTH_TIMEOUT": "1",
    }
    celery_worker.stop()
    try:
        make_celery_worker(env=env)
        daphne = make_daphne_server(env=env)
        user = UserFactory(username="unreachable")
        workspace = WorkspaceFactory(name="Unreachable")
        MembershipFactory(workspace=workspace, user=user, role=Membership.Role.OWNER)
        token = Token.objects.create(user=user).key
        with httpx.Client(
            base_url=daphne.url, timeout=30, headers={"Authorization": f"Token {token}"}
        ) as client:
            _, tab = open_tab({"client": client, "workspace": workspace.pk}, provider="remote")
            failed = final({"client": client}, tab)
    finally:
        celery_worker.start()
    assert (failed["state"], failed["error_code"]) == ("error", "provision_failed")
    assert "connect" in failed["error_message"]
    assert "cannot reach the remote sandbox host" in failed["error_message"]


def test_tasks_may_name_only_configured_providers(api):
    refused = api["client"].post(
        f"/api/workspaces/{api['workspace']}/tasks/", json={"title": "x", "provider": "daytona"}
    )
    assert refused.status_code == 400
    assert "local, remote" in refused.json()["error"]["message"]
