"""A database from before unread and draft became per member migrates: a tab's draft and
unread become its creator's own, and the event log no longer replays them to everyone."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from django_test_migrations.migrator import Migrator

BEFORE = [("workbench", "0005_workspace_in_core"), ("core", "0002_own_tables")]
AFTER = [("workbench", "0007_drafts_out_of_the_event_log")]


@pytest.fixture
def migrator(migrator_factory) -> Migrator:
    migrator = migrator_factory()
    yield migrator
    migrator.reset()


def test_drafts_become_their_creators_own_and_leave_the_log(migrator: Migrator) -> None:
    old = migrator.apply_initial_migration(BEFORE)
    users = old.apps.get_model("auth", "User")
    ada, bo = users.objects.create(username="ada"), users.objects.create(username="bo")
    workspace = old.apps.get_model("core", "Workspace").objects.create(name="W", event_seq=1)
    task = old.apps.get_model("tasks_app", "Task").objects.create(
        workspace=workspace, title="t", created_by=ada
    )
    tabs = old.apps.get_model("workbench", "WorkbenchTab")
    drafted = tabs.objects.create(
        workspace=workspace, task=task, agent="mock", created_by=ada, draft="ada's", unread=True
    )
    untouched = tabs.objects.create(workspace=workspace, task=task, agent="mock", created_by=bo)
    old.apps.get_model("core", "Event").objects.create(
        workspace=workspace,
        seq=1,
        name="tab.updated",
        data={"id": str(drafted.pk), "draft": "ada's", "unread": True, "version": 1},
    )

    new = migrator.apply_tested_migration(AFTER)

    states = new.apps.get_model("workbench", "TabUserState").objects
    assert list(states.values_list("tab_id", "user_id", "draft", "unread")) == [
        (drafted.pk, ada.pk, "ada's", True)
    ]
    assert not states.filter(tab_id=untouched.pk).exists()
    event = new.apps.get_model("core", "Event").objects.get()
    assert event.data == {"id": str(drafted.pk), "version": 1}
