"""Teams on one live workbench, on the real processes (Daphne, Redis, a Celery worker and
sandbox-agent servers): two members' unread and drafts stay their own, a removed member's
socket closes at once, and a model chosen for a pending tab is what its session runs."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
from rest_framework.authtoken.models import Token

from core.models import Workspace
from sandboxes.agent_client import AgentServerClient
from sandboxes.models import Sandbox, SandboxState
from tests.factories import UserFactory
from tests.helpers import wait_until
from workbench_client import WorkbenchClient


def api_for(member: dict[str, Any], token: str) -> httpx.Client:
    return httpx.Client(
        base_url=member["http"], timeout=30, headers={"Authorization": f"Token {token}"}
    )


def add_bob(member: dict[str, Any]) -> str:
    """Bob joins the member's workspace through the members API; returns his token."""
    bob = UserFactory(username="bob-teams")
    with api_for(member, member["token"]) as owner:
        added = owner.post(
            f"/api/workspaces/{member['workspace']}/members/", json={"username": bob.username}
        )
        assert added.status_code == 201, added.json()
    return Token.objects.create(user=bob).key


def ready_tab(api: httpx.Client, member: dict[str, Any], title: str) -> dict[str, Any]:
    task = api.post(f"/api/workspaces/{member['workspace']}/tasks/", json={"title": title}).json()
    tab = api.post(f"/api/tasks/{task['id']}/tabs/", json={}).json()
    return wait_until(
        lambda: (t := api.get(f"/api/tabs/{tab['id']}/").json())["state"] == "ready" and t,
        timeout=60,
        message="tab never became ready",
    )


async def caught_up(client: WorkbenchClient, workspace_id: int) -> None:
    """Wait until the client has applied every event the workspace has recorded so far."""
    seq = await asyncio.to_thread(
        lambda: Workspace.objects.values_list("event_seq", flat=True).get(pk=workspace_id)
    )
    await client.wait_for(lambda m: m.seq >= seq, timeout=30)


def test_two_members_keep_their_own_unread_and_drafts(member, celery_worker):
    bob_token = add_bob(member)
    with api_for(member, member["token"]) as alice, api_for(member, bob_token) as bob:
        tab = ready_tab(alice, member, "shared work")
        url = f"/api/tabs/{tab['id']}/"

        async def scenario() -> None:
            async with (
                WorkbenchClient(member["ws"], token=member["token"]) as mine,
                WorkbenchClient(member["ws"], token=bob_token) as theirs,
            ):
                for api, text in ((alice, "alice's half thought"), (bob, "bob's half thought")):
                    saved = await asyncio.to_thread(api.patch, url, json={"draft": text})
                    assert saved.status_code == 200
                await theirs.wait_for(lambda m: m.tabs[tab["id"]]["draft"] == "bob's half thought")
                await mine.wait_for(lambda m: m.tabs[tab["id"]]["draft"] == "alice's half thought")

                # A reply while neither views the tab: unread for both.
                await asyncio.to_thread(alice.post, f"{url}messages/", json={"text": "one"})
                for client in (mine, theirs):
                    await client.wait_for(lambda m: m.tabs[tab["id"]]["unread"], timeout=30)
                # Alice views it: read for her only.
                await mine.view(tab["id"])
                await mine.wait_for(lambda m: not m.tabs[tab["id"]]["unread"], timeout=10)
                assert theirs.model.tabs[tab["id"]]["unread"]
                # Another reply while she views it: still read for her; bob's stays, once.
                sent = await asyncio.to_thread(alice.post, f"{url}messages/", json={"text": "two"})
                reply_done = lambda m: any(  # noqa: E731
                    f["event"] == "message.updated"
                    and f["data"]["reply_to"] == sent.json()["id"]
                    and f["data"]["state"] == "complete"
                    for f in m.applied
                )
                await mine.wait_for(reply_done, timeout=30)
                # Every event up to now, so a late unread would be here (it commits with the
                # reply, after the reply's own event).
                for client in (mine, theirs):
                    await caught_up(client, member["workspace"])
                assert not mine.model.tabs[tab["id"]]["unread"]
                bobs_unread = [
                    f
                    for f in theirs.model.applied
                    if f["event"] == "tab.user_state" and f["data"].get("unread") is True
                ]
                assert len(bobs_unread) == 1  # marked once, not once per reply
                # Nothing of the other's draft reached either socket.
                assert "bob's half thought" not in json.dumps(list(mine.model.applied))
                assert "alice's half thought" not in json.dumps(list(theirs.model.applied))

        asyncio.run(scenario())
        mine_rest, theirs_rest = alice.get(url).json(), bob.get(url).json()
        assert (mine_rest["unread"], mine_rest["draft"]) == (False, "alice's half thought")
        assert (theirs_rest["unread"], theirs_rest["draft"]) == (True, "bob's half thought")


def test_a_removed_member_is_disconnected_at_once(member, celery_worker):
    bob_token = add_bob(member)
    bob_id = Token.objects.get(key=bob_token).user_id

    async def scenario() -> None:
        async with WorkbenchClient(member["ws"], token=bob_token) as theirs:
            with api_for(member, member["token"]) as owner:
                removed = await asyncio.to_thread(
                    owner.delete, f"/api/workspaces/{member['workspace']}/members/{bob_id}/"
                )
            assert removed.status_code == 204
            await theirs.wait_for(lambda m: bob_id not in m.members, timeout=10)
            deadline = asyncio.get_running_loop().time() + 10
            while theirs.close_code != 4403:
                assert asyncio.get_running_loop().time() < deadline, theirs.close_code
                await asyncio.sleep(0.05)

    asyncio.run(scenario())
    with api_for(member, bob_token) as bob:
        assert bob.get(f"/api/workspaces/{member['workspace']}/members/").status_code == 404


def test_a_model_chosen_while_pending_is_the_one_the_session_runs(
    member, celery_worker, make_celery_worker
):
    celery_worker.stop()
    try:
        make_celery_worker(env={"WORKBENCH_LOCAL_PROVISION_DELAY": "2"})
        with api_for(member, member["token"]) as api:
            task = api.post(
                f"/api/workspaces/{member['workspace']}/tasks/", json={"title": "models"}
            ).json()
            tab = api.post(f"/api/tasks/{task['id']}/tabs/", json={}).json()
            assert tab["state"] == "pending_provision"
            chosen = api.patch(f"/api/tabs/{tab['id']}/", json={"model": "mock-fast"})
            assert chosen.status_code == 200, chosen.json()
            ready = wait_until(
                lambda: (t := api.get(f"/api/tabs/{tab['id']}/").json())["state"] == "ready" and t,
                timeout=60,
                message="tab never became ready",
            )
            assert (ready["model"], ready["session_model"]) == ("mock-fast", "mock-fast")
            sandbox = Sandbox.objects.get(task_id=task["id"], state=SandboxState.READY)
            offered = [value for value, _ in sandbox.agent_models]
            assert {"mock", "mock-fast"} <= set(offered)  # as the server reported them
            refused = api.patch(f"/api/tabs/{tab['id']}/", json={"model": "no-such-model"})
            assert refused.status_code == 400
            assert refused.json()["error"]["code"] == "unknown_model"
        # The session itself was told: sandbox-agent's feed of the tab's ACP server shows it.
        with AgentServerClient(sandbox.base_url, sandbox.token) as server:
            # The ACP server id is deterministic per tab and attempt (sessions.py).
            server_id = f"tab-{uuid.UUID(tab['id']).hex}-{ready['attempt']}"
            seen = session_requests(server, server_id)
        assert {"configId": "model", "value": "mock-fast"}.items() <= seen[-1].items()
    finally:
        celery_worker.start()


def session_requests(server: AgentServerClient, server_id: str) -> list[dict[str, Any]]:
    """The params of every session/set_config_option the ACP server received (its SSE feed
    replays its history: the mock agent echoes each request on it)."""
    found: list[dict[str, Any]] = []
    with server._feed(server_id, {}, timeout=5) as feed:  # the client's own feed reader
        for event in feed.iter_sse():
            text = event.data or ""
            if "session/set_config_option" in text:
                message = json.loads(text)
                request = (message.get("params") or {}).get("message") or message
                if request.get("method") == "session/set_config_option":
                    found.append(request["params"])
            if '"session/prompt"' in text or (found and '"result"' in text):
                break
    assert found, "the server never received session/set_config_option"
    return found
