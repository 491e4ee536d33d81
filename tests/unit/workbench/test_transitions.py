"""One transition helper for tabs, sandboxes and messages: only declared moves, and a late
writer loses instead of overwriting."""

from __future__ import annotations

import pytest

from core.models import Event
from core.transitions import sources_of, transition
from sandboxes.models import SANDBOX_TRANSITIONS, Sandbox, SandboxState
from tests.factories import SandboxFactory, TabFactory
from workbench.models import (
    ALLOWED_TRANSITIONS,
    MESSAGE_TRANSITIONS,
    Message,
    MessageRole,
    MessageState,
)
from workbench.services import messages

pytestmark = pytest.mark.django_db


def message(state: str, role: str = MessageRole.AGENT) -> Message:
    tab = TabFactory()
    return Message.objects.create(tab=tab, workspace_id=tab.workspace_id, role=role, state=state)


def test_a_late_complete_never_overwrites_a_failed_reply():
    reply = message(MessageState.FAILED)
    seq = reply.tab.workspace.event_seq
    assert messages._update(reply.pk, to=MessageState.COMPLETE, text="late") is None
    reply.refresh_from_db()
    assert (reply.state, reply.text, reply.version) == (MessageState.FAILED, "", 1)
    assert not Event.objects.filter(workspace=reply.tab.workspace, seq__gt=seq).exists()


def test_streamed_text_is_written_only_while_the_reply_streams():
    reply = message(MessageState.STREAMING)
    assert messages._update(reply.pk, text="so far").text == "so far"
    messages._update(reply.pk, to=MessageState.FAILED, error_message="Interrupted.")
    assert messages._update(reply.pk, text="more") is None
    assert Message.objects.get(pk=reply.pk).text == "so far"


def test_undeclared_sources_are_refused_before_any_write():
    sandbox = SandboxFactory(state=SandboxState.DESTROYED)
    with pytest.raises(ValueError, match="not declared"):
        transition(
            Sandbox.objects.filter(pk=sandbox.pk),
            table=SANDBOX_TRANSITIONS,
            to=SandboxState.READY,
            sources=[SandboxState.DESTROYED],
        )
    rows = Sandbox.objects.filter(pk=sandbox.pk)
    assert transition(rows, table=SANDBOX_TRANSITIONS, to=SandboxState.READY) == 0


@pytest.mark.parametrize("table", [ALLOWED_TRANSITIONS, SANDBOX_TRANSITIONS, MESSAGE_TRANSITIONS])
def test_every_table_declares_its_terminal_states_with_no_way_out(table):
    terminal = [state for state, targets in table.items() if not targets]
    assert terminal
    for state in terminal:
        assert sources_of(table, state)  # reachable
