"""What the helpers wait for (workbench_client.waiters): a tab becoming ready, a reply."""

from __future__ import annotations

import pytest

from workbench_client import PromptFailed, TabClosed, TabFailed
from workbench_client.waiters import ReplyWaiter, TabWaiter, is_progress_of, tab_event_of


def tab(state: str, version: int, **extra) -> dict:
    return {"id": "t1", "state": state, "version": version, "error_code": "", **extra}


def test_a_tab_waiter_returns_the_ready_tab_and_ignores_older_versions():
    waiter = TabWaiter("t1")
    assert waiter.feed(tab("pending_provision", 1)) is None
    assert waiter.feed({**tab("ready", 5), "id": "other"}) is None
    assert waiter.feed(tab("pending_session_create", 3)) is None
    assert waiter.feed(tab("ready", 2)) is None  # older than one seen
    assert waiter.feed(tab("ready", 4))["version"] == 4


def test_a_tab_waiter_raises_the_tabs_error_code_and_message():
    waiter = TabWaiter("t1")
    failed = tab("error", 2, error_code="provision_failed", error_message="clone failed")
    with pytest.raises(TabFailed) as raised:
        waiter.feed(failed)
    assert (raised.value.code, raised.value.message) == ("provision_failed", "clone failed")
    assert raised.value.tab["version"] == 2
    with pytest.raises(TabClosed):
        TabWaiter("t1").feed(tab("closed", 3))


def prompt(state: str = "queued") -> dict:
    return {"id": 7, "tab": "t1", "role": "user", "state": state, "version": 1, "error_message": ""}


def reply(text: str, state: str, version: int, reply_to: int = 7) -> dict:
    return {
        "id": 8,
        "tab": "t1",
        "role": "agent",
        "text": text,
        "state": state,
        "version": version,
        "reply_to": reply_to,
    }


def test_a_reply_waiter_returns_the_finished_reply_and_tells_what_grew():
    waiter = ReplyWaiter(prompt())
    assert waiter.feed(reply("other", "complete", 1, reply_to=6)) is None  # another prompt's
    assert waiter.feed(reply("Hel", "streaming", 1)) is None
    assert waiter.delta() == "Hel"
    assert waiter.feed(reply("Hello", "streaming", 2)) is None
    assert waiter.delta() == "lo"
    assert waiter.feed(reply("He", "streaming", 1)) is None  # stale
    assert waiter.delta() == ""
    done = waiter.feed(reply("Hello!", "complete", 3))
    assert done is not None and done["text"] == "Hello!" and waiter.delta() == "!"


def test_a_failed_reply_is_returned_and_a_failed_prompt_raises():
    assert ReplyWaiter(prompt()).feed(reply("", "failed", 2))["state"] == "failed"
    with pytest.raises(PromptFailed):
        ReplyWaiter(prompt()).feed({**prompt("failed"), "error_message": "tab closed"})


def test_the_event_filters_pick_the_tabs_and_its_tasks_events():
    def event(name, **data):
        return {"event": name, "data": data}

    assert tab_event_of(event("tab.updated", id="t1"), "t1")
    assert tab_event_of(event("message.created", tab="t1"), "t1")
    assert not tab_event_of(event("message.created", tab="t2"), "t1")
    assert not tab_event_of(event("task.updated", id=1), "t1")
    assert is_progress_of(event("provisioning.step", task=3), 3, "t1")
    assert is_progress_of(event("sandbox.updated", task=3), 3, "t1")
    assert not is_progress_of(event("sandbox.updated", task=4), 3, "t1")
    assert is_progress_of(event("tab.updated", id="t1"), 3, "t1")
