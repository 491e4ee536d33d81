"""Operators change members in the admin through the services: each change is an event
(so a removed member's sockets close), and the last owner stays."""

from __future__ import annotations

import pytest

from core.models import Event, Membership

pytestmark = pytest.mark.django_db


def post_members(client, workspace, rows: list[dict]) -> None:
    data = {
        "name": workspace.name,
        "memberships-TOTAL_FORMS": str(len(rows)),
        "memberships-INITIAL_FORMS": str(sum(1 for r in rows if r.get("id"))),
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
    }
    for i, row in enumerate(rows):
        for key, value in row.items():
            data[f"memberships-{i}-{key}"] = value
        data[f"memberships-{i}-workspace"] = str(workspace.pk)
    answer = client.post(f"/admin/core/workspace/{workspace.pk}/change/", data)
    assert answer.status_code == 302, answer.content[:2000]


def rows(workspace, **changes) -> list[dict]:
    out = []
    for m in workspace.memberships.order_by("pk"):
        row = {"id": str(m.pk), "user": str(m.user_id), "role": m.role}
        row.update(changes.get(m.user.username, {}))
        out.append(row)
    return out


def test_an_operator_removes_and_promotes_members_with_events(client, workspace, alice, bob):
    operator = type(alice).objects.create_superuser("operator", "op@example.org", "pw")
    client.force_login(operator)
    post_members(client, workspace, rows(workspace, bob={"role": "owner"}))
    assert Membership.objects.get(workspace=workspace, user=bob).role == "owner"
    post_members(client, workspace, rows(workspace, alice={"DELETE": "on"}))
    assert not Membership.objects.filter(workspace=workspace, user=alice).exists()
    names = list(Event.objects.filter(workspace=workspace).values_list("name", "data__user"))
    assert names == [("member.updated", bob.pk), ("member.removed", alice.pk)]


def test_the_admin_keeps_the_last_owner(client, workspace, alice, bob):
    operator = type(alice).objects.create_superuser("operator", "op@example.org", "pw")
    client.force_login(operator)
    post_members(client, workspace, rows(workspace, alice={"DELETE": "on"}))
    assert Membership.objects.get(workspace=workspace, user=alice).role == "owner"
    assert not Event.objects.filter(workspace=workspace).exists()


def test_an_operator_sees_that_a_private_event_happened_not_its_draft(client, workspace, alice):
    from tests.factories import TabFactory, TaskFactory
    from workbench import services

    tab = TabFactory(task=TaskFactory(workspace=workspace))
    services.tab_update(tab_id=tab.pk, user=alice, draft="alice's own words")
    operator = type(alice).objects.create_superuser("operator", "op@example.org", "pw")
    client.force_login(operator)
    event = Event.objects.get(workspace=workspace, name="tab.user_state")
    page = client.get(f"/admin/core/event/{event.pk}/change/").content.decode()
    assert "private to its audience" in page
    assert "alice&#x27;s own words" not in page and "alice's own words" not in page
