"""Sending a prompt over REST: queued in any open state (202), delivered once the tab is
ready, refused only for a closed tab; a closed tab's waiting prompts fail with the reason.
The provider is a double here; the real path is tests/integration/test_messages.py."""

from __future__ import annotations

from unittest import mock

import pytest

from core.models import Event
from sandboxes.models import SandboxState
from tests.factories import SandboxFactory, TabFactory, TaskFactory
from workbench import services
from workbench.models import Message, MessageState, TabState

pytestmark = pytest.mark.django_db


@pytest.fixture
def deliveries():
    """Capture the delivery dispatches instead of sending them."""
    with mock.patch("workbench.workflows.start_message_delivery") as start:
        yield start


def send(client, tab, text="hello"):
    return client.post(f"/api/tabs/{tab.pk}/messages/", {"text": text}, format="json")


@pytest.mark.parametrize(
    "state", [TabState.PENDING_PROVISION, TabState.PENDING_SESSION_CREATE, TabState.ERROR]
)
def test_a_prompt_to_a_tab_not_ready_is_queued_and_waits_for_it(
    client_for, workspace, alice, deliveries, django_capture_on_commit_callbacks, state
):
    tab = TabFactory(task=TaskFactory(workspace=workspace), state=state)
    with django_capture_on_commit_callbacks(execute=True):
        answer = send(client_for(alice), tab)
    assert answer.status_code == 202, answer.json()
    assert (answer.json()["state"], answer.json()["text"]) == ("queued", "hello")
    deliveries.assert_not_called()  # nothing to deliver to yet: its ready step starts it


def test_a_prompt_to_a_ready_tab_is_delivered_after_commit(
    client_for, workspace, alice, deliveries, django_capture_on_commit_callbacks
):
    tab = TabFactory(task=TaskFactory(workspace=workspace), state=TabState.READY)
    with django_capture_on_commit_callbacks() as callbacks:
        assert send(client_for(alice), tab).status_code == 202
        deliveries.assert_not_called()
    for callback in callbacks:
        callback()
    deliveries.assert_called_once_with(tab_id=tab.pk)


def test_a_closed_tab_refuses_a_prompt_with_the_reason(client_for, workspace, alice, deliveries):
    tab = TabFactory(task=TaskFactory(workspace=workspace), state=TabState.CLOSED)
    answer = send(client_for(alice), tab)
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "tab_closed"
    assert not Message.objects.filter(tab=tab).exists()


def test_a_tab_takes_a_bounded_number_of_waiting_prompts(
    client_for, workspace, alice, deliveries, settings
):
    settings.WORKBENCH_MAX_QUEUED_PROMPTS = 3
    tab = TabFactory(task=TaskFactory(workspace=workspace), state=TabState.PENDING_PROVISION)
    client = client_for(alice)
    for n in range(3):
        assert send(client, tab, f"prompt {n}").status_code == 202
    refused = send(client, tab, "one too many")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "too_many_queued"
    assert Message.objects.filter(tab=tab).count() == 3


def test_closing_a_tab_fails_its_waiting_prompts_with_an_event_each(
    client_for, workspace, alice, deliveries
):
    tab = TabFactory(task=TaskFactory(workspace=workspace), state=TabState.PENDING_PROVISION)
    client = client_for(alice)
    for n in range(2):
        send(client, tab, f"prompt {n}")
    assert client.delete(f"/api/tabs/{tab.pk}/").status_code in (200, 204)
    failed = list(Message.objects.filter(tab=tab))
    assert [m.state for m in failed] == [MessageState.FAILED, MessageState.FAILED]
    assert all("closed before this prompt was sent" in m.error_message for m in failed)
    updates = Event.objects.filter(workspace=workspace, name="message.updated")
    assert sorted(e.data["id"] for e in updates) == sorted(m.pk for m in failed)


def test_the_ready_step_starts_the_delivery_of_prompts_sent_while_pending(
    client_for, workspace, alice, deliveries
):
    sandbox = SandboxFactory(task=TaskFactory(workspace=workspace), state=SandboxState.READY)
    tab = TabFactory(task=sandbox.task, sandbox=sandbox, state=TabState.PENDING_SESSION_CREATE)
    assert send(client_for(alice), tab, "typed while pending").status_code == 202
    provider = mock.Mock()
    provider.create_session.return_value = "session-1"
    with mock.patch("sandboxes.providers.get_provider", return_value=provider):
        services.tab_open_session(tab_id=tab.pk, attempt=tab.attempt)
    deliveries.assert_called_once_with(tab_id=tab.pk)


@pytest.mark.parametrize(("draft", "ok"), [("é" * 50_000, True), ("😀" * 25_001, False)])
def test_a_draft_is_bounded_in_bytes_not_characters(client_for, workspace, alice, draft, ok):
    """100,000 bytes of UTF-8: a draft's event stays far under a websocket frame's 1 MiB
    even ASCII-escaped (an astral character is 12 bytes there)."""
    tab = TabFactory(task=TaskFactory(workspace=workspace), state=TabState.PENDING_PROVISION)
    answer = client_for(alice).patch(f"/api/tabs/{tab.pk}/", {"draft": draft}, format="json")
    assert answer.status_code == (200 if ok else 400)
    if not ok:
        assert "100000 bytes" in answer.json()["error"]["fields"]["draft"][0]
