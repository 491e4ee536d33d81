"""Issue 5 end to end: prompts to a real sandbox-agent session, replies over the websocket."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
from typing import Any

import httpx
import pytest

from sandboxes.models import Sandbox
from sandboxes.providers.local import LocalProvider
from sandboxes.services import handle_of
from tests.helpers import wait_until
from workbench_client import WorkbenchClient


@pytest.fixture(autouse=True)
def _worker(celery_worker) -> None:
    """Every test here needs the session's worker."""


def client(member: dict[str, Any]) -> httpx.Client:
    return httpx.Client(
        base_url=member["http"], timeout=30, headers={"Authorization": f"Token {member['token']}"}
    )


def ready_tab(api: httpx.Client, member: dict[str, Any]) -> dict:
    task = api.post(f"/api/workspaces/{member['workspace']}/tasks/", json={"title": "talk"}).json()
    tab = api.post(f"/api/tasks/{task['id']}/tabs/", json={}).json()
    return wait_until(
        lambda: (t := api.get(f"/api/tabs/{tab['id']}/").json())["state"] == "ready" and t,
        timeout=60,
        message="tab never became ready",
    )


def transcript(api: httpx.Client, tab_id: str) -> list[dict]:
    return api.get(f"/api/tabs/{tab_id}/messages/").json()["results"]


def test_a_prompt_to_a_ready_tab_gets_the_agents_reply_over_the_websocket(member):
    with client(member) as api:
        tab = ready_tab(api, member)

        async def scenario() -> list[dict]:
            async with WorkbenchClient(member["ws"], token=member["token"]) as ws:
                sent = await asyncio.to_thread(
                    api.post, f"/api/tabs/{tab['id']}/messages/", json={"text": "hello agent"}
                )
                assert sent.status_code == 202
                assert sent.json()["state"] == "queued" and sent.json()["role"] == "user"
                await ws.wait_for(lambda m: m.tabs[tab["id"]]["unread"], timeout=30)
                return [f for f in ws.model.applied if f["event"].startswith("message.")]

        frames = asyncio.run(scenario())
    replies = [f["data"] for f in frames if f["data"]["role"] == "agent"]
    assert replies[0]["state"] == "streaming"
    assert replies[-1]["state"] == "complete"
    assert "hello agent" in replies[-1]["text"]  # the mock agent answers with what it got
    user_states = [f["data"]["state"] for f in frames if f["data"]["role"] == "user"]
    assert user_states == ["queued", "sending", "complete"]
    with client(member) as api:
        messages = transcript(api, tab["id"])
        assert [(m["role"], m["state"]) for m in messages] == [
            ("user", "complete"),
            ("agent", "complete"),
        ]
        assert messages[1]["reply_to"] == messages[0]["id"]
        read = api.patch(f"/api/tabs/{tab['id']}/", json={"unread": False}).json()
        assert read["unread"] is False


def test_prompts_sent_in_quick_succession_are_answered_in_order(member):
    with client(member) as api:
        tab = ready_tab(api, member)
        for n in range(5):
            assert (
                api.post(
                    f"/api/tabs/{tab['id']}/messages/", json={"text": f"prompt {n}"}
                ).status_code
                == 202
            )

        def all_answered() -> list[dict] | None:
            messages = transcript(api, tab["id"])
            done = [m for m in messages if m["state"] == "complete"]
            return messages if len(done) == 10 else None

        messages = wait_until(all_answered, timeout=60, message="not all prompts answered")
    # Prompts queued ahead interleave with replies by id; what matters is that replies come
    # in prompt order, each answering its own prompt, one turn at a time.
    prompts = [m for m in messages if m["role"] == "user"]
    replies = [m for m in messages if m["role"] == "agent"]
    assert [p["text"] for p in prompts] == [f"prompt {n}" for n in range(5)]
    for n, (prompt, reply) in enumerate(zip(prompts, replies, strict=True)):
        assert reply["reply_to"] == prompt["id"]
        assert f"prompt {n}" in reply["text"]
    for earlier, later in itertools.pairwise(replies):
        assert earlier["updated_at"] <= later["created_at"]  # the next turn began after


def test_prompts_to_a_pending_tab_are_refused_with_the_reason(member):
    with client(member) as api:
        task = api.post(
            f"/api/workspaces/{member['workspace']}/tasks/", json={"title": "pending"}
        ).json()
        tab = api.post(f"/api/tasks/{task['id']}/tabs/", json={}).json()
        api.patch(f"/api/tabs/{tab['id']}/", json={"draft": "typed while pending"})
        refused = api.post(f"/api/tabs/{tab['id']}/messages/", json={"text": "too early"})
        assert refused.status_code == 409
        error = refused.json()["error"]
        assert error["code"] == "tab_not_ready"
        assert error["fields"]["state"] in {"pending_provision", "pending_session_create"}
        assert api.get(f"/api/tabs/{tab['id']}/").json()["draft"] == "typed while pending"
        assert transcript(api, tab["id"]) == []
        for bad in [{"text": ""}, {"text": "   "}, {"text": "x" * 32_001}, {}]:
            assert api.post(f"/api/tabs/{tab['id']}/messages/", json=bad).status_code == 400


def test_a_killed_sandbox_turns_the_tab_to_error_and_retry_reprovisions_it(member):
    with client(member) as api:
        tab = ready_tab(api, member)
        sandbox = Sandbox.objects.get(pk=tab["sandbox"])
        os.killpg(sandbox.pid, signal.SIGKILL)
        wait_until(
            lambda: not LocalProvider().health(handle_of(sandbox)),
            timeout=10,
            message="the sandbox-agent server still answers",
        )

        sent = api.post(f"/api/tabs/{tab['id']}/messages/", json={"text": "are you there?"})
        assert sent.status_code == 202
        failed = wait_until(
            lambda: (t := api.get(f"/api/tabs/{tab['id']}/").json())["state"] == "error" and t,
            timeout=30,
            message="the tab did not notice its sandbox died",
        )
        assert failed["error_code"] == "sandbox_lost"
        assert transcript(api, tab["id"])[0]["state"] == "failed"

        assert api.post(f"/api/tabs/{tab['id']}/retry/").json()["state"] == "pending_provision"
        again = wait_until(
            lambda: (t := api.get(f"/api/tabs/{tab['id']}/").json())["state"] == "ready" and t,
            timeout=60,
            message="the retried tab did not become ready",
        )
        assert again["sandbox"] != tab["sandbox"]  # a fresh sandbox
        assert (
            api.post(f"/api/tabs/{tab['id']}/messages/", json={"text": "back again"}).status_code
            == 202
        )
        wait_until(
            lambda: transcript(api, tab["id"])[-1]["state"] == "complete",
            timeout=30,
            message="no reply after the retry",
        )
