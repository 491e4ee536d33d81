"""Issue 3 end to end: the event stream from a real Daphne, Redis and Celery worker."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from rest_framework.authtoken.models import Token
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from core.models import Membership
from tests.factories import MembershipFactory, UserFactory, WorkspaceFactory
from workbench_client import WorkbenchClient, WorkbenchModel

LOSSY_LAYER = "tests.support.lossy_layer.LossyRedisPubSubChannelLayer"


def rest(member: dict[str, Any]) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=member["http"], timeout=30, headers={"Authorization": f"Token {member['token']}"}
    )


async def open_tabs(api: httpx.AsyncClient, member: dict[str, Any], count: int) -> list[dict]:
    task = (
        await api.post(f"/api/workspaces/{member['workspace']}/tasks/", json={"title": "streamed"})
    ).json()
    responses = await asyncio.gather(
        *[api.post(f"/api/tasks/{task['id']}/tabs/", json={}) for _ in range(count)]
    )
    assert all(r.status_code == 201 for r in responses)
    return [r.json() for r in responses]


def all_ready(ids: list[str]):
    return lambda m: all(m.tabs.get(i, {}).get("state") == "ready" for i in ids)


def same_as(snapshot: dict[str, Any], model: WorkbenchModel) -> None:
    """The client's model equals the server's current snapshot (what matters to a client)."""
    fresh = WorkbenchModel()
    fresh.load_snapshot(snapshot)
    assert model.tabs == fresh.tabs
    assert model.tasks == fresh.tasks
    assert model.seq <= fresh.seq


def test_a_connected_client_sees_a_tab_appear_pending_then_become_ready(member, celery_worker):
    async def scenario() -> None:
        async with (
            WorkbenchClient(member["ws"], token=member["token"]) as client,
            rest(member) as api,
        ):
            start = client.model.seq
            [tab] = await open_tabs(api, member, 1)
            await client.wait_for(all_ready([tab["id"]]), timeout=60)
            seqs = [f["seq"] for f in client.model.applied]
            assert seqs == list(range(start + 1, start + 1 + len(seqs)))  # in order, no gap
            states = [
                f["data"]["state"]
                for f in client.model.applied
                if f["event"] == "tab.updated" and f["data"]["id"] == tab["id"]
            ]
            assert states == ["pending_provision", "pending_session_create", "ready"]
            steps = [
                f["data"]["name"]
                for f in client.model.applied
                if f["event"] == "provisioning.step" and f["data"]["outcome"] == "running"
            ]
            assert steps == ["prepare_workspace", "start_server", "wait_healthy", "install_agent"]
            assert client.resumes == 0
            same_as(
                (await api.get(f"/api/workspaces/{member['workspace']}/workbench/")).json(),
                client.model,
            )

    asyncio.run(scenario())


def test_a_client_whose_connection_drops_catches_up_by_resuming(member, celery_worker):
    async def scenario() -> None:
        async with (
            WorkbenchClient(member["ws"], token=member["token"], heartbeat=0.5) as client,
            rest(member) as api,
        ):
            tabs = await open_tabs(api, member, 3)
            await client.drop_connection()
            await client.wait_for(all_ready([t["id"] for t in tabs]), timeout=60)
            assert client.connects >= 2
            same_as(
                (await api.get(f"/api/workspaces/{member['workspace']}/workbench/")).json(),
                client.model,
            )

    asyncio.run(scenario())


@pytest.fixture
def lossy_worker(celery_worker, make_celery_worker):
    """Replace the session's worker with one whose broadcasts lose half their messages."""
    celery_worker.stop()
    try:
        yield make_celery_worker(
            env={"WORKBENCH_CHANNEL_LAYER": LOSSY_LAYER, "WORKBENCH_TEST_DROP_RATE": "0.5"}
        )
    finally:
        celery_worker.start()


def test_a_client_behind_a_lossy_channel_layer_ends_with_the_database_state(member, lossy_worker):
    async def scenario() -> None:
        async with (
            WorkbenchClient(member["ws"], token=member["token"], heartbeat=0.3) as client,
            rest(member) as api,
        ):
            tabs = await open_tabs(api, member, 8)
            await client.wait_for(all_ready([t["id"] for t in tabs]), timeout=60)
            snapshot = (await api.get(f"/api/workspaces/{member['workspace']}/workbench/")).json()
            await client.wait_for(lambda m: m.seq >= snapshot["seq"], timeout=10)
            same_as(snapshot, client.model)
            assert client.resumes > 0  # messages were lost, and resuming recovered them

    asyncio.run(scenario())


@pytest.mark.parametrize("who", ["anonymous", "outsider", "bad-token"])
def test_only_members_may_connect(member, who):
    outsider = UserFactory(username="outsider")
    token = {
        "anonymous": None,
        "outsider": Token.objects.create(user=outsider).key,
        "bad-token": "0" * 40,
    }[who]

    async def scenario() -> int | None:
        headers = {"Authorization": f"Token {token}"} if token else {}
        async with connect(member["ws"], additional_headers=headers) as ws:
            with pytest.raises(Exception):  # noqa: B017 - any close ends the iteration
                async for raw in ws:
                    raise AssertionError(f"a refused client received {raw!r}")
            return ws.close_code

    assert asyncio.run(scenario()) == 4403


def test_a_cross_origin_browser_is_refused(member):
    async def scenario() -> None:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(
                member["ws"],
                origin="http://evil.example",
                additional_headers={"Authorization": f"Token {member['token']}"},
            ):
                pass
        assert refused.value.response.status_code == 403
        # The service's own origin, port included (another port is refused: test_security_access).
        async with WorkbenchClient(
            member["ws"], token=member["token"], origin=member["http"]
        ) as client:
            assert client.model.seq >= 0

    asyncio.run(scenario())


def test_the_stream_survives_a_redis_restart(member, celery_worker, redis_server):
    # A second workspace of the same user: its group is new to the Daphne process, so
    # joining it after the restart needs a fresh SUBSCRIBE on the layer's connection.
    user = Token.objects.get(key=member["token"]).user
    other = WorkspaceFactory(name="After the restart")
    MembershipFactory(workspace=other, user=user, role=Membership.Role.OWNER)
    other_member = {
        **member,
        "workspace": other.pk,
        "ws": member["ws"].replace(f"/{member['workspace']}/", f"/{other.pk}/"),
    }

    async def scenario() -> None:
        # A long heartbeat: what reaches this client after the restart comes live.
        async with (
            WorkbenchClient(member["ws"], token=member["token"], heartbeat=60) as before,
            rest(member) as api,
        ):
            await asyncio.to_thread(redis_server.restart)
            async with WorkbenchClient(other_member["ws"], token=member["token"]) as after:
                for client, who in ((before, member), (after, other_member)):
                    [tab] = await open_tabs(api, who, 1)
                    await client.wait_for(all_ready([tab["id"]]), timeout=60)

    asyncio.run(scenario())


def test_a_workspace_too_big_for_one_frame_connects_and_loads_the_rest_by_pages(member):
    """2,000 tasks with a tab each were a 4 MB snapshot: Daphne refused it (1011) on every
    connect. Now the first page comes over the socket and the client follows `next`."""
    from tasks_app.models import Task
    from tests.factories import TabFactory, TaskFactory
    from workbench.models import WorkbenchTab

    tasks = Task.objects.bulk_create(
        [TaskFactory.build(workspace_id=member["workspace"]) for _ in range(2_000)]
    )
    WorkbenchTab.objects.bulk_create(
        [TabFactory.build(task=task, workspace_id=member["workspace"]) for task in tasks]
    )

    async def scenario() -> None:
        headers = {"Authorization": f"Token {member['token']}"}
        async with connect(member["ws"], additional_headers=headers, max_size=2**20) as ws:
            frame = await asyncio.wait_for(ws.recv(), 30)
            assert len(frame.encode()) < 2**20
        async with WorkbenchClient(member["ws"], token=member["token"]) as client:
            assert len(client.model.tasks) < 2_000 and client.model.next
            pages = await client.load_more(pages=None)
            assert pages > 1 and client.model.next is None
            assert set(client.model.tasks) == {task.pk for task in tasks}
            assert len(client.model.tabs) == 2_000
            async with rest(member) as api:  # still live: a change after the pages arrives
                renamed = await api.patch(f"/api/tasks/{tasks[0].pk}/", json={"title": "last"})
                assert renamed.status_code == 200
                await client.wait_for(lambda m: m.tasks[tasks[0].pk]["title"] == "last", 30)

    asyncio.run(scenario())
