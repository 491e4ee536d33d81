"""The tab state machine: every declared transition works, every other one is refused."""

from __future__ import annotations

import itertools

import pytest

from core.errors import InvalidTransition
from core.models import Event
from tests.factories import SandboxFactory, TabFactory, UserFactory
from workbench import services
from workbench.models import ALLOWED_TRANSITIONS, TabState, TabUserState, WorkbenchTab
from workbench.services.transitions import tab_transition

pytestmark = pytest.mark.django_db

ALL_STATES = list(TabState)


def test_the_table_matches_the_contract_diagram():
    assert {
        "pending_provision": {"pending_session_create", "error", "closed"},
        "pending_session_create": {"ready", "error", "closed"},
        "ready": {"error", "closed"},
        "error": {"pending_provision", "pending_session_create", "closed"},
        "closed": set(),
    } == ALLOWED_TRANSITIONS


@pytest.mark.parametrize(("source", "target"), list(itertools.product(ALL_STATES, ALL_STATES)))
def test_it_moves_only_along_declared_transitions(source, target, dispatched):
    tab = TabFactory(state=source)
    declared = target in ALLOWED_TRANSITIONS[source]
    if not declared:
        with pytest.raises(ValueError, match="not declared"):
            tab_transition(tab_id=tab.pk, to=target, sources=[source])
        assert WorkbenchTab.objects.get(pk=tab.pk).state == source
        return
    moved = tab_transition(tab_id=tab.pk, to=target, sources=[source])
    assert moved is not None
    assert moved.state == target
    assert moved.version == tab.version + 1
    event = Event.objects.get(workspace=tab.workspace)
    assert event.name == "tab.updated"
    assert event.data["state"] == target
    assert event.data["version"] == moved.version


@pytest.mark.parametrize("state", ALL_STATES)
def test_a_transition_from_the_wrong_state_changes_nothing(state):
    tab = TabFactory(state=state)
    others = [s for s in ALL_STATES if s != state and TabState.READY in ALLOWED_TRANSITIONS[s]]
    assert tab_transition(tab_id=tab.pk, to=TabState.READY, sources=others) is None
    fresh = WorkbenchTab.objects.get(pk=tab.pk)
    assert (fresh.state, fresh.version) == (state, tab.version)
    assert not Event.objects.exists()


@pytest.mark.parametrize("state", ALL_STATES)
def test_it_retries_only_tabs_in_error(state, dispatched):
    tab = TabFactory(state=state, error_code="provision_failed" if state == "error" else "")
    if state != TabState.ERROR:
        with pytest.raises(InvalidTransition):
            services.tab_retry(tab_id=tab.pk)
        return
    retried = services.tab_retry(tab_id=tab.pk)
    assert retried.state == TabState.PENDING_PROVISION
    assert (retried.attempt, retried.error_code) == (tab.attempt + 1, "")


def test_retry_goes_straight_to_session_creation_when_the_sandbox_is_ready(dispatched):
    sandbox = SandboxFactory()
    tab = TabFactory(task=sandbox.task, state=TabState.ERROR, error_code="session_failed")
    retried = services.tab_retry(tab_id=tab.pk)
    assert retried.state == TabState.PENDING_SESSION_CREATE
    assert retried.sandbox_id == sandbox.pk


@pytest.mark.parametrize("state", ALL_STATES)
def test_close_ends_every_state_and_repeating_it_is_harmless(state):
    tab = TabFactory(state=state)
    closed = services.tab_close(tab_id=tab.pk)
    assert closed.state == TabState.CLOSED
    again = services.tab_close(tab_id=tab.pk)
    assert again.version == closed.version


@pytest.mark.parametrize("state", ALL_STATES)
def test_only_a_tab_creating_its_session_can_become_ready(state):
    tab = TabFactory(state=state)
    became = services.tab_mark_ready(
        tab_id=tab.pk, attempt=tab.attempt, session_id="s", server_id="srv"
    )
    assert became is (state == TabState.PENDING_SESSION_CREATE)


def test_two_workers_marking_one_tab_ready_have_exactly_one_winner():
    tab = TabFactory(state=TabState.PENDING_SESSION_CREATE)
    results = [
        services.tab_mark_ready(tab_id=tab.pk, attempt=1, session_id=f"s{i}", server_id="srv")
        for i in range(2)
    ]
    assert sorted(results) == [False, True]
    assert WorkbenchTab.objects.get(pk=tab.pk).version == tab.version + 1


def test_work_for_an_old_attempt_cannot_touch_a_retried_tab():
    tab = TabFactory(state=TabState.PENDING_SESSION_CREATE, attempt=2)
    assert not services.tab_mark_ready(tab_id=tab.pk, attempt=1, session_id="s", server_id="x")
    assert not services.tab_fail(tab_id=tab.pk, attempt=1, code="timeout", message="late")
    assert WorkbenchTab.objects.get(pk=tab.pk).state == TabState.PENDING_SESSION_CREATE


@pytest.mark.parametrize("state", [s for s in ALL_STATES if s != TabState.CLOSED])
def test_a_draft_can_be_saved_in_every_open_state(state):
    tab, user = TabFactory(state=state), UserFactory()
    updated = services.tab_update(tab_id=tab.pk, user=user, draft="half a thought")
    mine = TabUserState.objects.get(tab=tab, user=user)
    assert (updated.state, mine.draft) == (state, "half a thought")


def test_a_closed_tab_cannot_be_edited():
    tab = TabFactory(state=TabState.CLOSED)
    with pytest.raises(InvalidTransition):
        services.tab_update(tab_id=tab.pk, user=UserFactory(), draft="x")
    assert not TabUserState.objects.filter(tab=tab).exists()
