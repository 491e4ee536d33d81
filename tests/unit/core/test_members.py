"""A workspace's members over REST: who may list, add, change and remove them, and what the
last owner may not do. Every refusal is the API's error body and changes nothing."""

from __future__ import annotations

import pytest

from core.models import Event, Membership
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def members_url(workspace, user=None) -> str:
    base = f"/api/workspaces/{workspace.pk}/members/"
    return base if user is None else f"{base}{user.pk}/"


def roles(workspace) -> dict[str, str]:
    return dict(workspace.memberships.values_list("user__username", "role"))


def test_members_see_the_list_owners_first_and_outsiders_get_404(
    client_for, workspace, alice, bob, charlie
):
    answer = client_for(bob).get(members_url(workspace))
    assert answer.status_code == 200
    assert [(m["username"], m["role"]) for m in answer.json()] == [
        ("alice", "owner"),
        ("bob", "member"),
    ]
    refused = client_for(charlie).get(members_url(workspace))
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "workspace_not_found"


@pytest.mark.parametrize("by", ["username", "email"])
def test_an_owner_adds_a_user_by_username_or_email(by, client_for, workspace, alice):
    dana = UserFactory(username="dana", email="Dana@Example.org")
    body = {"username": "dana"} if by == "username" else {"email": "dana@example.org"}
    answer = client_for(alice).post(members_url(workspace), body, format="json")
    assert answer.status_code == 201, answer.json()
    assert answer.json()["user"] == dana.pk
    assert answer.json()["role"] == "member"
    assert roles(workspace)["dana"] == "member"
    last = Event.objects.filter(workspace=workspace).order_by("seq").last()
    assert (last.name, last.data["user"]) == ("member.updated", dana.pk)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"username": "nobody"}, 404, "user_not_found"),
        ({"username": "bob"}, 409, "already_member"),
        ({"username": "dana", "email": "d@example.org"}, 400, "invalid"),
        ({}, 400, "invalid"),
        ({"username": "dana", "role": "admin"}, 400, "invalid"),
    ],
)
def test_adding_refuses_what_it_cannot_do_and_changes_nothing(
    body, status, code, client_for, workspace, alice
):
    UserFactory(username="dana")
    before = roles(workspace)
    answer = client_for(alice).post(members_url(workspace), body, format="json")
    assert answer.status_code == status
    assert answer.json()["error"]["code"] == code
    assert roles(workspace) == before


def test_a_member_who_is_not_an_owner_cannot_manage_members(client_for, workspace, alice, bob):
    UserFactory(username="dana")
    client = client_for(bob)
    attempts = [
        client.post(members_url(workspace), {"username": "dana"}, format="json"),
        client.patch(members_url(workspace, bob), {"role": "owner"}, format="json"),
        client.delete(members_url(workspace, alice)),
    ]
    assert [a.status_code for a in attempts] == [403, 403, 403]
    assert {a.json()["error"]["code"] for a in attempts} == {"not_an_owner"}
    assert roles(workspace) == {"alice": "owner", "bob": "member"}


def test_an_owner_changes_a_role_but_the_last_owner_is_never_demoted(
    client_for, workspace, alice, bob
):
    client = client_for(alice)
    refused = client.patch(members_url(workspace, alice), {"role": "member"}, format="json")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "last_owner"
    promoted = client.patch(members_url(workspace, bob), {"role": "owner"}, format="json")
    assert (promoted.status_code, promoted.json()["role"]) == (200, "owner")
    # Now there are two owners: alice may step down.
    demoted = client.patch(members_url(workspace, alice), {"role": "member"}, format="json")
    assert demoted.status_code == 200
    assert roles(workspace) == {"alice": "member", "bob": "owner"}


def test_a_member_leaves_an_owner_removes_and_the_last_owner_stays(
    client_for, workspace, alice, bob, charlie
):
    Membership.objects.create(workspace=workspace, user=charlie)
    assert client_for(charlie).delete(members_url(workspace, charlie)).status_code == 204
    assert client_for(charlie).get(members_url(workspace)).status_code == 404  # gone
    assert client_for(alice).delete(members_url(workspace, bob)).status_code == 204
    stays = client_for(alice).delete(members_url(workspace, alice))
    assert stays.status_code == 409
    assert stays.json()["error"]["code"] == "last_owner"
    assert roles(workspace) == {"alice": "owner"}
    removed = Event.objects.filter(workspace=workspace, name="member.removed")
    assert sorted(e.data["user"] for e in removed) == sorted([bob.pk, charlie.pk])


def test_removing_someone_who_is_not_a_member_is_a_404(client_for, workspace, alice, charlie):
    answer = client_for(alice).delete(members_url(workspace, charlie))
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "member_not_found"


@pytest.mark.django_db(transaction=True)
def test_two_owners_demoting_each_other_at_once_leave_one_owner(workspace, alice, bob):
    """Roles are read under the workspace lock: of two concurrent demotions, exactly one
    succeeds."""
    import threading

    from django.db import close_old_connections

    from core import services
    from core.errors import DomainError

    Membership.objects.filter(workspace=workspace, user=bob).update(role="owner")
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def demote(by, target) -> None:
        start.wait()
        try:
            services.member_update(
                workspace_id=workspace.pk, by=by, user_id=target.pk, role="member"
            )
            outcomes.append("demoted")
        except DomainError as exc:
            outcomes.append(exc.code)
        finally:
            close_old_connections()

    threads = [
        threading.Thread(target=demote, args=(alice, bob)),
        threading.Thread(target=demote, args=(bob, alice)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    # The second sees either that it would leave no owner, or that its caller was demoted.
    assert len(outcomes) == 2 and outcomes.count("demoted") == 1, outcomes
    assert set(outcomes) - {"demoted"} <= {"last_owner", "not_an_owner"}
    assert Membership.objects.filter(workspace=workspace, role="owner").count() == 1
