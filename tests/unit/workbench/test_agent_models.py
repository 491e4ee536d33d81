"""A tab's model over REST: chosen in any open state, checked against what the sandbox's
server offers, given to a live session (or refused with the agent's reason), and applied
when a pending tab's session is made. The provider is a double here; the real
sandbox-agent path is tests/integration/test_teams.py."""

from __future__ import annotations

from unittest import mock

import pytest

from sandboxes.models import SandboxState
from sandboxes.providers.base import ProviderError
from tests.factories import SandboxFactory, TabFactory, TaskFactory
from workbench import services
from workbench.models import TabState, WorkbenchTab

pytestmark = pytest.mark.django_db

OFFERED = [["mock", "Mock"], ["mock-fast", "Mock Fast"]]


@pytest.fixture
def provider():
    double = mock.Mock()
    double.create_session.return_value = "session-1"
    with mock.patch("sandboxes.providers.get_provider", return_value=double):
        yield double


def ready_tab(workspace, **fields):
    sandbox = SandboxFactory(
        task=TaskFactory(workspace=workspace),
        state=SandboxState.READY,
        agent_models=OFFERED,
        default_model="mock",
    )
    return TabFactory(
        task=sandbox.task,
        sandbox=sandbox,
        state=TabState.READY,
        session_id="session-1",
        acp_server_id="tab-x-1",
        **fields,
    )


def patch_model(client, tab, model):
    return client.patch(f"/api/tabs/{tab.pk}/", {"model": model}, format="json")


def test_a_model_chosen_for_a_pending_tab_is_kept_for_its_session(
    client_for, workspace, alice, provider
):
    tab = TabFactory(task=TaskFactory(workspace=workspace))
    answer = patch_model(client_for(alice), tab, "mock-fast")
    assert answer.status_code == 200
    assert (answer.json()["model"], answer.json()["session_model"]) == ("mock-fast", "")
    provider.set_model.assert_not_called()  # no session yet


def test_a_ready_tabs_model_is_given_to_its_live_session(client_for, workspace, alice, provider):
    tab = ready_tab(workspace)
    answer = patch_model(client_for(alice), tab, "mock-fast")
    assert answer.status_code == 200, answer.json()
    assert (answer.json()["model"], answer.json()["session_model"]) == ("mock-fast", "mock-fast")
    provider.set_model.assert_called_once_with(
        mock.ANY, server_id="tab-x-1", session_id="session-1", model="mock-fast"
    )


def test_a_model_the_server_does_not_offer_is_a_400_listing_the_choices(
    client_for, workspace, alice, provider
):
    tab = ready_tab(workspace)
    answer = patch_model(client_for(alice), tab, "gpt-imaginary")
    assert answer.status_code == 400
    body = answer.json()["error"]
    assert body["code"] == "unknown_model"
    assert "mock-fast" in body["fields"]["model"][0]
    assert WorkbenchTab.objects.get(pk=tab.pk).model == ""
    provider.set_model.assert_not_called()


def test_an_agent_that_refuses_the_change_says_why_and_nothing_changes(
    client_for, workspace, alice, provider
):
    tab = ready_tab(workspace, model="mock", session_model="mock")
    provider.set_model.side_effect = ProviderError("ACP session/set_config_option failed: nope")
    answer = patch_model(client_for(alice), tab, "mock-fast")
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "model_not_applied"
    assert "nope" in answer.json()["error"]["message"]
    kept = WorkbenchTab.objects.get(pk=tab.pk)
    assert (kept.model, kept.session_model, kept.version) == ("mock", "mock", tab.version)


def test_choosing_a_model_for_an_error_tab_retries_it(client_for, workspace, alice, dispatched):
    tab = TabFactory(task=TaskFactory(workspace=workspace), state=TabState.ERROR)
    answer = patch_model(client_for(alice), tab, "mock-fast")
    assert answer.status_code == 200
    assert (answer.json()["state"], answer.json()["model"]) == ("pending_provision", "mock-fast")
    assert answer.json()["attempt"] == tab.attempt + 1


def test_the_session_step_opens_the_session_with_the_chosen_model(workspace, provider):
    sandbox = SandboxFactory(
        task=TaskFactory(workspace=workspace), state=SandboxState.READY, agent_models=OFFERED
    )
    tab = TabFactory(
        task=sandbox.task,
        sandbox=sandbox,
        state=TabState.PENDING_SESSION_CREATE,
        model="mock-fast",
    )
    services.tab_open_session(tab_id=tab.pk, attempt=tab.attempt)
    ready = WorkbenchTab.objects.get(pk=tab.pk)
    assert (ready.state, ready.session_model) == (TabState.READY, "mock-fast")
    provider.set_model.assert_called_once_with(
        mock.ANY, server_id=ready.acp_server_id, session_id="session-1", model="mock-fast"
    )


def test_a_session_step_for_a_model_the_server_lacks_fails_the_tab_with_the_choices(
    workspace, provider
):
    sandbox = SandboxFactory(
        task=TaskFactory(workspace=workspace), state=SandboxState.READY, agent_models=OFFERED
    )
    tab = TabFactory(
        task=sandbox.task, sandbox=sandbox, state=TabState.PENDING_SESSION_CREATE, model="nope"
    )
    services.tab_open_session(tab_id=tab.pk, attempt=tab.attempt)
    failed = WorkbenchTab.objects.get(pk=tab.pk)
    assert (failed.state, failed.error_code) == (TabState.ERROR, "session_failed")
    assert "mock-fast" in failed.error_message
    provider.create_session.assert_not_called()
