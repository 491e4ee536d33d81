"""A database made before Workspace, Membership and Event moved to core migrates and keeps
its rows (and an operator's permissions on them)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from django.db import connection, transaction

if TYPE_CHECKING:
    from django_test_migrations.migrator import Migrator

# The last migrations of each app before the move: what `make run` had made.
BEFORE = [
    ("workbench", "0004_sweeps"),
    ("tasks_app", "0002_initial"),
    ("sandboxes", "0003_sweeps"),
    ("contenttypes", "0002_remove_content_type_name"),
    ("auth", "0012_alter_user_first_name_max_length"),
]
AFTER = [("core", "0002_own_tables"), ("workbench", "0005_workspace_in_core")]


@pytest.fixture
def migrator(migrator_factory) -> Migrator:
    migrator = migrator_factory()
    yield migrator
    migrator.reset()


def test_rows_made_before_the_move_are_kept_with_their_references(migrator: Migrator) -> None:
    old = migrator.apply_initial_migration(BEFORE)
    user = old.apps.get_model("auth", "User").objects.create(username="ada")
    old_workspace = old.apps.get_model("workbench", "Workspace")
    workspace = old_workspace.objects.create(name="Before", event_seq=2)
    old.apps.get_model("workbench", "Membership").objects.create(
        workspace=workspace, user=user, role="owner"
    )
    for seq in (1, 2):
        old.apps.get_model("workbench", "Event").objects.create(
            workspace=workspace, seq=seq, name="task.updated", data={"seq": seq}
        )
    task = old.apps.get_model("tasks_app", "Task").objects.create(
        workspace=workspace, title="fix it", created_by=user
    )
    tab = old.apps.get_model("workbench", "WorkbenchTab").objects.create(
        workspace=workspace, task=task, agent="mock", created_by=user
    )
    content_type = old.apps.get_model("contenttypes", "ContentType").objects.create(
        app_label="workbench", model="workspace"
    )
    group = old.apps.get_model("auth", "Group").objects.create(name="operators")
    permission = old.apps.get_model("auth", "Permission").objects.create(
        content_type=content_type, codename="change_workspace", name="Can change workspace"
    )
    group.permissions.add(permission)

    new = migrator.apply_tested_migration(AFTER)

    tables = set(connection.introspection.table_names())
    assert {"core_workspace", "core_membership", "core_event"} <= tables
    assert not {"workbench_workspace", "workbench_membership", "workbench_event"} & tables
    moved = new.apps.get_model("core", "Workspace").objects.get(pk=workspace.pk)
    assert (moved.name, moved.event_seq) == ("Before", 2)
    membership = new.apps.get_model("core", "Membership").objects.get()
    assert (membership.workspace_id, membership.user_id, membership.role) == (
        workspace.pk,
        user.pk,
        "owner",
    )
    events = new.apps.get_model("core", "Event").objects.filter(workspace_id=workspace.pk)
    assert list(events.order_by("seq").values_list("seq", "data")) == [
        (1, {"seq": 1}),
        (2, {"seq": 2}),
    ]
    assert new.apps.get_model("tasks_app", "Task").objects.get().workspace_id == workspace.pk
    assert new.apps.get_model("workbench", "WorkbenchTab").objects.get(
        pk=tab.pk
    ).workspace.name == ("Before")
    granted = new.apps.get_model("auth", "Group").objects.get(name="operators").permissions.get()
    assert (granted.content_type.app_label, granted.codename) == ("core", "change_workspace")
    # The database's foreign keys follow the renamed table (the commit checks them after the
    # cascade), and the workspace ids go on from where they were.
    with transaction.atomic():
        new.apps.get_model("core", "Workspace").objects.filter(pk=workspace.pk).delete()
    assert not new.apps.get_model("workbench", "WorkbenchTab").objects.exists()
    assert new.apps.get_model("core", "Workspace").objects.create(name="after").pk > workspace.pk
