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


def test_the_clients_model_holds_every_page_it_loads_and_ignores_a_stale_one(
    workspace, alice, settings
):
    from tests.unit.workbench.test_workbench_pages import paged_workspace

    settings.WORKBENCH_PAGE_TASKS, settings.WORKBENCH_PAGE_TABS = 2, 3
    snapshot, pages, task_ids, tab_ids = paged_workspace(workspace, alice)
    model = WorkbenchModel()
    model.load_snapshot(snapshot)
    assert len(model.tasks) < len(task_ids) and model.next == pages[0][0]
    assert not model.load_page(pages[1][0], pages[1][1])  # not the one it asked for next
    for path, page in pages:
        assert model.load_page(path, page)
    assert set(model.tasks) == task_ids and set(model.tabs) == tab_ids and model.next is None
