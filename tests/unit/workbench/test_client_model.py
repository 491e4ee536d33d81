"""The Python client's model (workbench_client.WorkbenchModel) on the event contract's cases:
a snapshot plus the recorded events, as its socket receives them, ends where a fresh
snapshot is (members, tasks, tabs with the user's own unread and draft)."""

from __future__ import annotations

import pytest

from tests.unit.workbench.test_event_contract import CASES, load, run_case
from workbench_client import WorkbenchModel

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("name", list(CASES))
def test_the_clients_model_ends_where_a_fresh_snapshot_is(
    name, workspace, alice, dispatched, django_capture_on_commit_callbacks
):
    before, frames, after = run_case(name, workspace, alice, django_capture_on_commit_callbacks)
    model = WorkbenchModel()
    model.load_snapshot(before)
    for frame in frames:
        assert frame["seq"] == model.seq + 1
        model.apply(frame)
    expected = load(after)
    held = {
        "seq": model.seq,
        "me": model.me,
        "workspace": model.workspace,
        "members": model.members,
        "tasks": model.tasks,
        "tabs": model.tabs,
    }
    assert held == expected
