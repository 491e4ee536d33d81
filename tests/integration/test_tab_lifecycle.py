"""Issue 2 end to end: real Daphne, Redis, Celery worker and sandbox-agent processes."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from rest_framework.authtoken.models import Token

from core.models import Event, Membership
from sandboxes.agent_client import AgentServerClient
from sandboxes.models import ProvisioningStep, Sandbox, SandboxState
from sandboxes.providers.local import LocalProvider
from sandboxes.services import handle_of
from tests.factories import MembershipFactory, UserFactory, WorkspaceFactory
from tests.helpers import open_tab, wait_until

READY_TIMEOUT = 60.0


@pytest.fixture
def api(daphne_server, celery_worker, integration_run) -> Iterator[httpx.Client]:
    """An httpx client of a workspace owner, talking to the real Daphne."""
    user = UserFactory(username="owner")
    workspace = WorkspaceFactory(name="Integration")
    MembershipFactory(workspace=workspace, user=user, role=Membership.Role.OWNER)
    token = Token.objects.create(user=user)
    with httpx.Client(
        base_url=daphne_server.url, timeout=30, headers={"Authorization": f"Token {token.key}"}
    ) as client:
        client.workspace_id = workspace.pk  # type: ignore[attr-defined]
        yield client
    # Stop every sandbox-agent server this test started (the run's teardown would too).
    provider = LocalProvider(root=integration_run.sandbox_root)
    for sandbox in Sandbox.objects.all():
        provider.destroy(sandbox.key, handle_of(sandbox) if sandbox.base_url else None)


def create_task(api: httpx.Client, **fields: str) -> dict:
    response = api.post(
        f"/api/workspaces/{api.workspace_id}/tasks/", json={"title": "integration", **fields}
    )
    assert response.status_code == 201, response.text
    return response.json()


def wait_for_state(
    api: httpx.Client, tab_id: str, state: str, timeout: float = READY_TIMEOUT
) -> dict:
    last: dict = {}

    def reached() -> dict | None:
        nonlocal last
        last = api.get(f"/api/tabs/{tab_id}/").json()
        return last if last["state"] == state else None

    return wait_until(
        reached,
        timeout=timeout,
        interval=0.05,
        message=lambda: f"tab {tab_id} never reached {state}; last: {last}",
    )


def test_a_tab_on_a_new_task_becomes_ready_through_background_work(api):
    task = create_task(api)
    tab = open_tab(api, task["id"])
    assert tab["state"] == "pending_provision"
    assert tab["sandbox"] is None and tab["session_id"] == ""

    ready = wait_for_state(api, tab["id"], "ready")
    assert ready["id"] == tab["id"]  # updated in place
    assert ready["sandbox"] is not None and ready["session_id"]
    assert ready["version"] > tab["version"]

    sandbox = Sandbox.objects.get(pk=ready["sandbox"])
    assert sandbox.state == SandboxState.READY
    with AgentServerClient(sandbox.base_url, sandbox.token) as server:
        assert server.health()
        assert f"tab-{tab['id'].replace('-', '')}-1" in server.list_servers()
    steps = api.get(f"/api/tasks/{task['id']}/").json()["sandbox"]["steps"]
    assert [s["name"] for s in steps] == [
        "prepare_workspace",
        "start_server",
        "wait_healthy",
        "install_agent",
    ]
    assert all(s["outcome"] == "succeeded" and s["duration_ms"] is not None for s in steps)
    states = [
        e.data["state"]
        for e in Event.objects.filter(name="tab.updated").order_by("seq")
        if e.data["id"] == tab["id"]
    ]
    assert states == ["pending_provision", "pending_session_create", "ready"]


def test_twenty_concurrent_tabs_on_one_new_task_share_one_sandbox(api):
    task = create_task(api)
    with ThreadPoolExecutor(max_workers=20) as pool:
        tabs = list(pool.map(lambda _: open_tab(api, task["id"]), range(20)))
    # Tabs opened after the sandbox became ready (mid-burst) skip straight to their session.
    assert tabs[0]["state"] == "pending_provision"
    assert {tab["state"] for tab in tabs} <= {"pending_provision", "pending_session_create"}

    ready = [wait_for_state(api, tab["id"], "ready") for tab in tabs]
    assert Sandbox.objects.filter(task_id=task["id"]).count() == 1
    assert {tab["sandbox"] for tab in ready} == {Sandbox.objects.get(task_id=task["id"]).pk}
    assert len({tab["session_id"] for tab in ready}) == 20  # each its own session
    sandbox = Sandbox.objects.get(task_id=task["id"])
    with AgentServerClient(sandbox.base_url, sandbox.token) as server:
        assert len([s for s in server.list_servers() if s.startswith("tab-")]) == 20


def test_a_clone_failure_fails_every_waiting_tab_and_retry_recovers(api, tmp_path: Path):
    repo = tmp_path / "repo"
    task = create_task(api, repository=str(repo), branch="feature")
    tabs = [open_tab(api, task["id"]) for _ in range(3)]

    failed = [wait_for_state(api, tab["id"], "error") for tab in tabs]
    for tab in failed:
        assert tab["error_code"] == "provision_failed"
        assert "prepare_workspace" in tab["error_message"]
        assert "does not exist" in tab["error_message"]
    # The clone fails in milliseconds, so a tab opened after a failure may have started a
    # fresh attempt (as it should); every attempt failed, none is live.
    attempts = Sandbox.objects.filter(task_id=task["id"])
    assert attempts.exists()
    assert {s.state for s in attempts} == {SandboxState.FAILED}

    # Fix the cause: the repository now exists, with the branch.
    subprocess.run(["git", "init", "-q", "-b", "feature", str(repo)], check=True)
    subprocess.run(
        [
            "git",
            "-C",
            str(repo),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "init",
        ],
        check=True,
    )

    retried = api.post(f"/api/tabs/{tabs[0]['id']}/retry/")
    assert retried.status_code == 200
    assert retried.json()["id"] == tabs[0]["id"]
    assert retried.json()["state"] == "pending_provision"
    ready = wait_for_state(api, tabs[0]["id"], "ready")
    assert ready["attempt"] == 2 and ready["error_code"] == ""
    sandboxes = Sandbox.objects.filter(task_id=task["id"]).order_by("pk")
    assert [s.state for s in sandboxes] == ["failed"] * (len(sandboxes) - 1) + ["ready"]
    workdir = Path(sandboxes.last().workdir)
    assert (workdir / ".git").is_dir()
    head = subprocess.run(
        # The working copy belongs to the sandbox's own uid: git would call it dubious.
        ["git", "-c", "safe.directory=*", "-C", str(workdir), "branch", "--show-current"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert head == "feature"
    # Members watched each step's log, and never git's own words about the failure.
    failed_step = ProvisioningStep.objects.get(sandbox=sandboxes.first(), outcome="failed")
    assert failed_step.log == f"Cloning {repo} at feature"
    made = sandboxes.last()
    assert [p["name"] for p in made.plan] == [s.name for s in made.steps.order_by("started_at")]
    assert "Cloned" in made.steps.get(name="prepare_workspace").log

    # A tab opened now uses the repaired sandbox; the others stay in error until retried.
    assert (
        wait_for_state(api, open_tab(api, task["id"])["id"], "ready")["sandbox"] == ready["sandbox"]
    )
    assert api.get(f"/api/tabs/{tabs[1]['id']}/").json()["state"] == "error"


@pytest.fixture
def slow_worker(celery_worker, make_celery_worker):
    """Swap the session's worker for one whose provisioning takes a recorded 1.5 s extra."""
    celery_worker.stop()
    try:
        yield make_celery_worker(env={"WORKBENCH_LOCAL_PROVISION_DELAY": "1.5"})
    finally:
        celery_worker.start()


def test_a_tab_closed_while_pending_stays_closed(api, slow_worker):
    task = create_task(api)
    doomed, kept = open_tab(api, task["id"]), open_tab(api, task["id"])
    assert api.delete(f"/api/tabs/{doomed['id']}/").status_code == 204

    wait_for_state(api, kept["id"], "ready")
    closed = api.get(f"/api/tabs/{doomed['id']}/").json()
    assert closed["state"] == "closed" and closed["session_id"] == ""
    states = [
        e.data["state"]
        for e in Event.objects.filter(name="tab.updated").order_by("seq")
        if e.data["id"] == doomed["id"]
    ]
    assert states == ["pending_provision", "closed"]
    sandbox = Sandbox.objects.get(task_id=task["id"])
    with AgentServerClient(sandbox.base_url, sandbox.token) as server:
        servers = server.list_servers()
    assert f"tab-{doomed['id'].replace('-', '')}-1" not in servers
    assert f"tab-{kept['id'].replace('-', '')}-1" in servers


def test_closing_a_ready_tab_tears_its_session_down(api):
    task = create_task(api)
    tab = wait_for_state(api, open_tab(api, task["id"])["id"], "ready")
    sandbox = Sandbox.objects.get(pk=tab["sandbox"])
    server_id = f"tab-{tab['id'].replace('-', '')}-1"
    assert api.delete(f"/api/tabs/{tab['id']}/").status_code == 204

    def gone() -> bool:
        with AgentServerClient(sandbox.base_url, sandbox.token) as server:
            return server_id not in server.list_servers()

    wait_until(gone, timeout=30, message="the closed tab's ACP server is still there")


def test_archiving_a_task_closes_its_tabs_and_stops_its_sandbox(api):
    task = create_task(api)
    tab = wait_for_state(api, open_tab(api, task["id"])["id"], "ready")
    sandbox = Sandbox.objects.get(pk=tab["sandbox"])
    pid = sandbox.pid

    archived = api.post(f"/api/tasks/{task['id']}/archive/")
    assert archived.status_code == 200 and archived.json()["archived"] is True
    assert api.get(f"/api/tabs/{tab['id']}/").json()["state"] == "closed"
    wait_until(
        lambda: Sandbox.objects.get(pk=sandbox.pk).state == SandboxState.DESTROYED,
        timeout=30,
        message="sandbox not destroyed",
    )
    assert pid is not None
    assert (
        not Path(f"/proc/{pid}").exists()
        or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    )
    assert not Path(sandbox.workdir).exists()
    refused = api.post(f"/api/tasks/{task['id']}/tabs/", json={})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "task_archived"


def test_the_service_is_ready_and_opening_a_tab_answers_fast(api):
    ready = api.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {
        "database": "ok",
        "redis": "ok",
        "worker": "ok",
        "builders": "ok",
    }
