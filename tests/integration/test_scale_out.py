"""Issue 8: many processes. Queues keep slow provisioning from starving other work, and a
client of one Daphne sees what happens through another Daphne and other workers."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from rest_framework.authtoken.models import Token

from core.models import Membership
from sandboxes.models import ProvisioningStep, Sandbox, StepOutcome
from sandboxes.providers.local import LocalProvider
from sandboxes.services import handle_of
from tests.factories import MembershipFactory, UserFactory, WorkspaceFactory
from tests.helpers import wait_until
from workbench_client import WorkbenchClient


@pytest.fixture
def member(integration_run) -> dict[str, Any]:
    """A workspace owner and their token."""
    user = UserFactory(username="scaler")
    workspace = WorkspaceFactory(name="Scale")
    MembershipFactory(workspace=workspace, user=user, role=Membership.Role.OWNER)
    yield {"workspace": workspace.pk, "token": Token.objects.create(user=user).key}
    provider = LocalProvider(root=integration_run.sandbox_root)
    for sandbox in Sandbox.objects.all():
        provider.destroy(sandbox.key, handle_of(sandbox) if sandbox.base_url else None)


def api_for(url: str, member: dict[str, Any]) -> httpx.Client:
    return httpx.Client(
        base_url=url, timeout=30, headers={"Authorization": f"Token {member['token']}"}
    )


def ready_tab(api: httpx.Client, member: dict[str, Any], **task: str) -> dict:
    created = api.post(
        f"/api/workspaces/{member['workspace']}/tasks/", json={"title": "scale", **task}
    ).json()
    tab = api.post(f"/api/tasks/{created['id']}/tabs/", json={}).json()
    return wait_until(
        lambda: (t := api.get(f"/api/tabs/{tab['id']}/").json())["state"] == "ready" and t,
        timeout=60,
        message="tab never became ready",
    )


def test_slow_provisioning_does_not_starve_prompts_or_sessions(
    member, daphne_server, celery_worker, make_celery_worker
):
    # One pool for provisioning, slowed down; one pool for sessions and prompts.
    celery_worker.stop()
    try:
        fast = make_celery_worker(queues="sessions,prompts,celery")
        provisioner = make_celery_worker(queues="provision")
        with api_for(daphne_server.url, member) as api:
            tab = ready_tab(api, member)  # provisioned quickly, before the slowdown
            provisioner.stop()
            make_celery_worker(
                queues="provision", concurrency=1, env={"WORKBENCH_LOCAL_PROVISION_DELAY": "20"}
            )
            slow = api.post(
                f"/api/workspaces/{member['workspace']}/tasks/", json={"title": "slow"}
            ).json()
            api.post(f"/api/tasks/{slow['id']}/tabs/", json={})
            wait_until(
                lambda: ProvisioningStep.objects.filter(
                    name="simulated_delay", outcome=StepOutcome.RUNNING
                ).exists(),
                timeout=30,
                message="the slow provisioning never started",
            )

            # The provisioning pool is busy for 20 s; prompts and new sessions still flow.
            assert (
                api.post(
                    f"/api/tabs/{tab['id']}/messages/", json={"text": "still there?"}
                ).status_code
                == 202
            )
            wait_until(
                lambda: (
                    api.get(f"/api/tabs/{tab['id']}/messages/").json()["results"][-1]["state"]
                    == "complete"
                ),
                timeout=10,
                message="the prompt starved",
            )
            second = api.post(f"/api/tasks/{tab['task']}/tabs/", json={}).json()
            assert second["state"] == "pending_session_create"
            wait_until(
                lambda: api.get(f"/api/tabs/{second['id']}/").json()["state"] == "ready",
                timeout=10,
                message="session creation starved behind provisioning",
            )
            assert ProvisioningStep.objects.filter(
                name="simulated_delay", outcome=StepOutcome.RUNNING
            ).exists()
            assert fast.alive
    finally:
        celery_worker.start()


def test_a_client_of_one_daphne_sees_changes_made_through_another(
    member, daphne_server, make_daphne_server, celery_worker, make_celery_worker
):
    other = make_daphne_server()
    make_celery_worker()  # two workers share the queues
    ws_url = (
        daphne_server.url.replace("http://", "ws://") + f"/ws/workspaces/{member['workspace']}/"
    )

    async def scenario() -> None:
        async with WorkbenchClient(ws_url, token=member["token"]) as client:
            with api_for(other.url, member) as api:  # every write goes through the other
                tabs = [ready_tab(api, member) for _ in range(2)]
                api.patch(f"/api/tabs/{tabs[0]['id']}/", json={"title": "renamed elsewhere"})
            await client.wait_for(
                lambda m: (
                    all(m.tabs.get(t["id"], {}).get("state") == "ready" for t in tabs)
                    and m.tabs[tabs[0]["id"]]["title"] == "renamed elsewhere"
                ),
                timeout=30,
            )
            assert client.resumes == 0  # delivered live, not recovered

    asyncio.run(scenario())
