"""A tab's `running_since`: set in the transaction that moves a prompt to `sending`, cleared
by every end of that turn (complete, failed, the tab failed or closed), each change a
version bump and a `tab.updated` event; a turn that ends late re-sets nothing. The provider
is a double; the browser's side is tests/e2e/test_tabs.py."""

from __future__ import annotations

from collections.abc import Callable
from unittest import mock

import pytest

from core.models import Event
from sandboxes.models import SandboxState
from sandboxes.providers.base import PromptResult, ProviderError, SandboxGone
from tests.factories import SandboxFactory, TaskFactory
from workbench import services
from workbench.models import Message, MessageRole, MessageState, TabErrorCode, TabState
from workbench.models import WorkbenchTab as Tab
from workbench.services import messages

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_dispatch():
    """Nothing leaves the process: deliveries, teardowns and runs are called by hand."""
    with (
        mock.patch("workbench.workflows.dispatch_after_commit"),
        mock.patch("workbench.presence.viewers", return_value=set()),
    ):
        yield


@pytest.fixture
def tab(workspace):
    sandbox = SandboxFactory(task=TaskFactory(workspace=workspace), state=SandboxState.READY)
    return Tab.objects.create(
        workspace=workspace,
        task=sandbox.task,
        sandbox=sandbox,
        agent="mock",
        state=TabState.READY,
        session_id="s-1",
        acp_server_id="tab-1",
    )


def queue(tab, text="hello") -> Message:
    return Message.objects.create(
        tab=tab,
        workspace_id=tab.workspace_id,
        role=MessageRole.USER,
        text=text,
        state=MessageState.QUEUED,
    )


def tab_events(tab) -> list[dict]:
    return [
        e.data
        for e in Event.objects.filter(name="tab.updated", data__id=str(tab.pk)).order_by("seq")
    ]


def deliver(tab, turn: Callable[[], PromptResult]) -> dict:
    """Deliver the tab's next prompt; `turn` runs as the agent's turn. Returns what the tab
    looked like (and the events it had recorded) while the turn ran."""
    seen: dict = {}

    def prompt(**_: object) -> PromptResult:
        row = Tab.objects.get(pk=tab.pk)
        seen.update(running_since=row.running_since, version=row.version, events=tab_events(tab))
        return turn()

    with mock.patch.object(messages.sandbox_services, "sandbox_session_prompt", prompt):
        messages.message_deliver_next(tab_id=tab.pk)
    return seen


def answered() -> PromptResult:
    return PromptResult(text="hi", stop_reason="end_turn", last_event_id="7")


def test_a_prompt_sent_to_the_agent_sets_running_since_to_its_start_with_an_event(tab):
    prompt = queue(tab)
    seen = deliver(tab, answered)
    sending_at = Message.objects.get(pk=prompt.pk).updated_at  # complete since: read below
    assert seen["running_since"] is not None
    assert seen["version"] == tab.version + 1
    # The event of the same transaction carries it, as REST and the snapshot do.
    assert seen["events"][-1]["running_since"] is not None
    assert seen["events"][-1]["version"] == seen["version"]
    assert seen["running_since"] <= sending_at


def test_a_completed_turn_clears_running_since_with_an_event(tab):
    queue(tab)
    seen = deliver(tab, answered)
    row = Tab.objects.get(pk=tab.pk)
    assert row.running_since is None
    assert row.version == seen["version"] + 1
    assert tab_events(tab)[-1]["running_since"] is None
    assert tab_events(tab)[-1]["version"] == row.version


@pytest.mark.parametrize(
    "error",
    [
        ProviderError("the agent said no", code="prompt_failed"),
        ProviderError("the session is gone", code="session_lost"),
        SandboxGone("the server stopped"),
    ],
    ids=["failed", "session_lost", "sandbox_gone"],
)
def test_a_failed_turn_clears_running_since(tab, error):
    prompt = queue(tab)

    def fails() -> PromptResult:
        raise error

    seen = deliver(tab, fails)
    assert seen["running_since"] is not None
    assert Message.objects.get(pk=prompt.pk).state == MessageState.FAILED
    row = Tab.objects.get(pk=tab.pk)
    assert row.running_since is None
    assert tab_events(tab)[-1]["running_since"] is None


def test_stopping_a_turn_ends_it_like_any_other_turn(tab):
    """Stop asks the agent to cancel; its turn then returns (stop reason `cancelled`)."""
    queue(tab)
    provider_cancel = mock.patch.object(messages.sandbox_services, "sandbox_session_cancel")

    def cancelled() -> PromptResult:
        with provider_cancel as cancel:
            services.messages.message_cancel_turn(tab_id=tab.pk)
        cancel.assert_called_once()
        return PromptResult(text="", stop_reason="cancelled", last_event_id="8")

    seen = deliver(tab, cancelled)
    assert seen["running_since"] is not None
    assert Tab.objects.get(pk=tab.pk).running_since is None


@pytest.mark.parametrize(
    "end",
    [
        lambda tab: services.tab_close(tab_id=tab.pk),
        lambda tab: services.tab_fail(
            tab_id=tab.pk, code=TabErrorCode.SANDBOX_LOST, message="the sandbox stopped"
        ),
        lambda tab: services.sandbox_lost(sandbox_id=tab.sandbox_id, message="it stopped"),
        lambda tab: services.task_archive(task_id=tab.task_id),
    ],
    ids=["closed", "failed", "sandbox_lost", "task_archived"],
)
def test_a_tab_that_stops_being_ready_ends_its_turn_and_a_late_reply_does_not_re_set_it(tab, end):
    queue(tab)
    during: dict = {}

    def ended_meanwhile() -> PromptResult:
        end(tab)
        row = Tab.objects.get(pk=tab.pk)
        during.update(state=row.state, running_since=row.running_since, version=row.version)
        return answered()  # the worker hears back after the tab moved on

    seen = deliver(tab, ended_meanwhile)
    assert seen["running_since"] is not None
    assert during["state"] in (TabState.CLOSED, TabState.ERROR)
    assert during["running_since"] is None
    assert tab_events(tab)[-1]["running_since"] is None
    row = Tab.objects.get(pk=tab.pk)
    # The late completion neither re-set it nor recorded a change of the tab.
    assert (row.running_since, row.version) == (None, during["version"])
    assert tab_events(tab)[-1]["version"] == row.version


def test_a_retried_tab_starts_without_a_running_turn(tab):
    queue(tab)

    def lost() -> PromptResult:
        services.tab_fail(tab_id=tab.pk, code=TabErrorCode.SESSION_FAILED, message="lost")
        raise ProviderError("the session is gone", code="prompt_failed")

    deliver(tab, lost)
    retried = services.tab_retry(tab_id=tab.pk)
    assert retried.running_since is None
    assert tab_events(tab)[-1]["running_since"] is None


def test_the_next_turn_sets_its_own_start(tab):
    queue(tab, "one")
    queue(tab, "two")
    first = deliver(tab, answered)
    second = deliver(tab, answered)
    assert first["running_since"] is not None
    assert second["running_since"] is not None
    assert second["running_since"] > first["running_since"]
    assert Tab.objects.get(pk=tab.pk).running_since is None


def test_the_tab_api_and_the_snapshot_carry_running_since(tab, client_for, alice):
    queue(tab)

    def check() -> PromptResult:
        client = client_for(alice)
        answer = client.get(f"/api/tabs/{tab.pk}/").json()
        assert answer["running_since"] is not None
        snapshot = client.get(f"/api/workspaces/{tab.workspace_id}/workbench/").json()
        (shown,) = [t for t in snapshot["tabs"] if t["id"] == str(tab.pk)]
        assert shown["running_since"] == answer["running_since"]
        return answered()

    deliver(tab, check)
    assert client_for(alice).get(f"/api/tabs/{tab.pk}/").json()["running_since"] is None
