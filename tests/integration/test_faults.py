"""Issue 6 fault tests: killed workers, duplicated and lost messages, failed dispatch."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any
from unittest import mock

import httpx
import pytest
from rest_framework.authtoken.models import Token

from config.celery import app
from core.models import Event, Membership
from sandboxes.agent_client import AgentServerClient
from sandboxes.models import ProvisioningStep, Sandbox, SandboxState, StepOutcome
from sandboxes.providers.local import LocalProvider
from sandboxes.services import handle_of
from tasks_app.models import Task
from tests.factories import MembershipFactory, UserFactory, WorkspaceFactory
from tests.helpers import wait_until
from workbench import reconciler, services, workflows
from workbench.models import TabState, WorkbenchTab

# A short lease and stall bound, so takeovers and re-drives happen within a test.
FAST_RECOVERY = {"WORKBENCH_PROVISION_LEASE_SECONDS": "2", "WORKBENCH_STALL_SECONDS": "1"}
FINAL = {TabState.READY, TabState.ERROR, TabState.CLOSED}


@pytest.fixture
def owner(daphne_server, integration_run, settings) -> Iterator[dict[str, Any]]:
    """A workspace owner and an API client on the real Daphne; reconciler bound shortened."""
    settings.WORKBENCH_STALL_SECONDS = 1
    settings.WORKBENCH_PROVISION_LEASE_SECONDS = 2
    user = UserFactory(username="faulty")
    workspace = WorkspaceFactory(name="Faults")
    MembershipFactory(workspace=workspace, user=user, role=Membership.Role.OWNER)
    token = Token.objects.create(user=user).key
    with httpx.Client(
        base_url=daphne_server.url, timeout=30, headers={"Authorization": f"Token {token}"}
    ) as api:
        yield {"api": api, "user": user, "workspace": workspace}
    provider = LocalProvider(root=integration_run.sandbox_root)
    for sandbox in Sandbox.objects.all():
        provider.destroy(sandbox.key, handle_of(sandbox) if sandbox.base_url else None)


@pytest.fixture
def swap_worker(celery_worker, make_celery_worker):
    """Stop the session's worker for this test; `swap_worker(env)` starts replacements."""
    celery_worker.stop()
    try:
        yield lambda **env: make_celery_worker(env={**FAST_RECOVERY, **env})
    finally:
        celery_worker.start()


def open_tabs(owner: dict, count: int, **task_fields: str) -> tuple[dict, list[dict]]:
    api = owner["api"]
    task = api.post(
        f"/api/workspaces/{owner['workspace'].pk}/tasks/", json={"title": "faults", **task_fields}
    ).json()
    tabs = [api.post(f"/api/tasks/{task['id']}/tabs/", json={}).json() for _ in range(count)]
    return task, tabs


def settle(tab_ids: list[str], *, timeout: float) -> list[WorkbenchTab]:
    """Run the reconciler the way beat does until every tab is final; return the tabs."""

    def all_final() -> list[WorkbenchTab] | None:
        reconciler.reconcile()
        tabs = list(WorkbenchTab.objects.filter(pk__in=tab_ids))
        return tabs if all(t.state in FINAL for t in tabs) else None

    return wait_until(
        all_final,
        timeout=timeout,
        interval=0.25,
        message=lambda: str(
            list(WorkbenchTab.objects.filter(pk__in=tab_ids).values_list("state", "redrives"))
        ),
    )


def tab_servers(sandbox: Sandbox) -> list[str]:
    with AgentServerClient(sandbox.base_url, sandbox.token) as server:
        return [s for s in server.list_servers() if s.startswith("tab-")]


def test_a_worker_killed_mid_provisioning_still_yields_a_ready_tab_and_one_sandbox(
    owner, swap_worker
):
    doomed = swap_worker(WORKBENCH_LOCAL_PROVISION_DELAY="30")
    task, [tab] = open_tabs(owner, 1)
    wait_until(
        lambda: ProvisioningStep.objects.filter(
            name="simulated_delay", outcome=StepOutcome.RUNNING
        ).exists(),
        timeout=30,
        message="provisioning never started",
    )
    doomed.kill(signal.SIGKILL)  # the worker and its pool children, mid-step

    swap_worker()  # a healthy worker; the killed run's lease lapses after 2 s
    [final] = settle([tab["id"]], timeout=60)
    assert final.state == TabState.READY
    sandboxes = Sandbox.objects.filter(task_id=task["id"])
    assert sandboxes.count() == 1
    sandbox = sandboxes.get()
    assert sandbox.state == SandboxState.READY and sandbox.fence >= 2  # taken over, fenced
    assert tab_servers(sandbox) == [final.acp_server_id]


def test_every_message_delivered_twice_gives_one_sandbox_one_session_one_transition(
    owner, celery_worker
):
    task, tabs = open_tabs(owner, 5)
    sandbox_id = Sandbox.objects.get(task_id=task["id"]).pk
    for _ in range(2 * len(tabs)):  # a second (and third) delivery of the provisioning run
        workflows.start_sandbox_run(sandbox_id=sandbox_id)
    final = settle([t["id"] for t in tabs], timeout=60)
    assert {t.state for t in final} == {TabState.READY}
    for tab in final:  # and of every session step after it succeeded
        for _ in range(2):
            workflows.start_session_open(tab_id=tab.pk, attempt=1)

    sandbox = Sandbox.objects.get(task_id=task["id"])
    wait_until(
        lambda: len(tab_servers(sandbox)) == 5,
        timeout=10,
        message="each tab should have exactly one session",
    )
    assert sorted(tab_servers(sandbox)) == sorted(t.acp_server_id for t in final)
    for tab in final:
        ready_events = [
            e
            for e in Event.objects.filter(name="tab.updated")
            if e.data["id"] == str(tab.pk) and e.data["state"] == "ready"
        ]
        assert len(ready_events) == 1


def test_a_step_outliving_the_visibility_timeout_runs_once_in_effect(owner, swap_worker):
    # Redis hands the unacked provisioning message to another consumer after 1 s while the
    # first still runs its 4 s step: the lease keeps the second one waiting.
    swap_worker(WORKBENCH_LOCAL_PROVISION_DELAY="4", WORKBENCH_VISIBILITY_TIMEOUT="1")
    task, tabs = open_tabs(owner, 3)
    final = settle([t["id"] for t in tabs], timeout=90)
    assert {t.state for t in final} == {TabState.READY}
    sandbox = Sandbox.objects.get(task_id=task["id"])
    assert sandbox.steps.filter(name="start_server").count() == 1
    assert sorted(tab_servers(sandbox)) == sorted(t.acp_server_id for t in final)


def test_redis_restarted_with_its_queue_lost_leaves_no_tab_pending(
    owner, swap_worker, redis_server
):
    swap_worker(WORKBENCH_LOCAL_PROVISION_DELAY="3")
    tasks = [open_tabs(owner, 5) for _ in range(4)]  # 20 pending tabs on 4 tasks
    tab_ids = [tab["id"] for _, tabs in tasks for tab in tabs]
    wait_until(
        lambda: ProvisioningStep.objects.filter(name="simulated_delay").exists(),
        timeout=30,
        message="provisioning never started",
    )
    redis_server.restart()  # no persistence: every queued and unacked message is gone

    final = settle(tab_ids, timeout=120)
    errors = [(t.error_code, t.error_message) for t in final if t.state != TabState.READY]
    assert errors == []
    for task, _ in tasks:
        assert Sandbox.objects.filter(task_id=task["id"], state=SandboxState.READY).count() == 1


def test_a_failed_dispatch_is_made_good_by_the_reconciler(owner, celery_worker):
    task = Task.objects.create(workspace=owner["workspace"], title="lost dispatch")
    with mock.patch.object(
        workflows, "start_sandbox_run", side_effect=ConnectionError("broker unreachable")
    ) as dispatch:
        tab, _ = services.tab_create(user=owner["user"], task=task)
    dispatch.assert_called_once()  # it was tried after commit, failed, and was logged
    assert WorkbenchTab.objects.get(pk=tab.pk).state == TabState.PENDING_PROVISION

    [final] = settle([str(tab.pk)], timeout=60)
    assert final.state == TabState.READY
    assert final.redrives >= 1


def test_readiness_answers_right_after_redis_restarts(daphne_server, celery_worker, redis_server):
    """A web process's pooled broker connection dies with Redis: readiness must not answer
    503 on it once Redis and a worker are back (as it did in CI: `worker: error:
    ConnectionError` while the worker answered)."""

    def readiness() -> tuple[int, dict[str, str]]:
        response = httpx.get(f"{daphne_server.url}/readyz", timeout=30)
        return response.status_code, response.json()["checks"]

    wait_until(lambda: readiness()[0] == 200, timeout=30, message=lambda: f"{readiness()}")
    redis_server.restart()

    def worker_answers() -> bool:
        with app.connection_for_write() as broker:  # new: none of ours from before
            return bool(
                app.control.ping(destination=[celery_worker.nodename], timeout=1, connection=broker)
            )

    # The worker reconnects on its own; once it answers a ping on a new connection...
    wait_until(worker_answers, timeout=60, message="the worker did not come back")
    assert readiness() == (
        200,
        {"database": "ok", "redis": "ok", "worker": "ok", "builders": "ok"},
    )  # ...the first probe sees it
