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


def test_prompts_sent_while_the_tab_is_pending_are_answered_in_order_once_it_is_ready(member):
    with client(member) as api:
        task = api.post(
            f"/api/workspaces/{member['workspace']}/tasks/", json={"title": "early"}
        ).json()
        tab = api.post(f"/api/tasks/{task['id']}/tabs/", json={}).json()
        assert tab["state"] == "pending_provision"
        sent = [
            api.post(f"/api/tabs/{tab['id']}/messages/", json={"text": f"early {n}"})
            for n in range(2)
        ]
        assert [s.status_code for s in sent] == [202, 202]
        assert [s.json()["state"] for s in sent] == ["queued", "queued"]

        def answered() -> list[dict] | None:
            messages = transcript(api, tab["id"])
            return messages if sum(m["state"] == "complete" for m in messages) == 4 else None

        messages = wait_until(answered, timeout=60, message="the early prompts were not answered")
        ready = api.get(f"/api/tabs/{tab['id']}/").json()
    assert ready["state"] == "ready"
    assert all(s.json()["created_at"] < ready["ready_at"] for s in sent)  # sent while pending
    prompts = [m for m in messages if m["role"] == "user"]
    replies = [m for m in messages if m["role"] == "agent"]
    assert [p["text"] for p in prompts] == ["early 0", "early 1"]
    assert [r["reply_to"] for r in replies] == [p["id"] for p in prompts]
    assert "early 0" in replies[0]["text"] and "early 1" in replies[1]["text"]


def test_a_prompt_to_an_error_tab_waits_for_the_retry_and_a_closed_tab_refuses(member, tmp_path):
    repository = tmp_path / "not-yet"
    with client(member) as api:
        task = api.post(
            f"/api/workspaces/{member['workspace']}/tasks/",
            json={"title": "broken", "repository": str(repository)},
        ).json()
        tab = api.post(f"/api/tasks/{task['id']}/tabs/", json={}).json()
        wait_until(
            lambda: api.get(f"/api/tabs/{tab['id']}/").json()["state"] == "error",
            timeout=60,
            message="the clone of a missing repository did not fail",
        )
        sent = api.post(f"/api/tabs/{tab['id']}/messages/", json={"text": "after the fix"})
        assert (sent.status_code, sent.json()["state"]) == (202, "queued")
        assert api.patch(f"/api/tasks/{task['id']}/", json={"repository": ""}).status_code == 200
        assert api.post(f"/api/tabs/{tab['id']}/retry/").status_code == 200
        reply = wait_until(
            lambda: next(
                (
                    m
                    for m in transcript(api, tab["id"])
                    if m["role"] == "agent" and m["state"] == "complete"
                ),
                None,
            ),
            timeout=60,
            message="the prompt queued in error was not answered after the retry",
        )
        assert "after the fix" in reply["text"]

        assert api.delete(f"/api/tabs/{tab['id']}/").status_code in (200, 204)
        refused = api.post(f"/api/tabs/{tab['id']}/messages/", json={"text": "too late"})
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "tab_closed"
        for bad in [{"text": ""}, {"text": "   "}, {"text": "x" * 32_001}, {}]:
            assert api.post(f"/api/tabs/{tab['id']}/messages/", json=bad).status_code == 400
        assert [m["text"] for m in transcript(api, tab["id"]) if m["role"] == "user"] == [
            "after the fix"
        ]


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
