"""Writes of workspaces, their members and their event log."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils.timezone import now

from core.errors import Conflict, Forbidden, NotFound
from core.events import record_event
from core.locks import workspace_transaction
from core.models import Event, Membership, Workspace
from core.serializers import MemberRemovedPayload, member_payload

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def workspace_create(*, user: User, name: str) -> Workspace:
    """Create a workspace; its creator becomes its owner."""
    with transaction.atomic():
        workspace = Workspace.objects.create(name=name)
        Membership.objects.create(workspace=workspace, user=user, role=Membership.Role.OWNER)
    return workspace


def membership_add(
    *, workspace_id: int, user: User, role: str = Membership.Role.MEMBER
) -> Membership:
    """Make `user` a member (an operator's or a fixture's way in; no role check)."""
    with workspace_transaction(workspace_id):
        membership, created = Membership.objects.select_related("user").get_or_create(
            workspace_id=workspace_id, user=user, defaults={"role": role}
        )
        if created:
            record_event(workspace_id, "member.updated", member_payload(membership))
    return membership


def member_add(
    *,
    workspace_id: int,
    by: User,
    username: str | None = None,
    email: str | None = None,
    role: str = Membership.Role.MEMBER,
) -> Membership:
    """An owner adds a user, found by username or email address, with a role."""
    with workspace_transaction(workspace_id):
        _require_owner(workspace_id, by)
        user = _find_user(username=username, email=email)
        if Membership.objects.filter(workspace_id=workspace_id, user=user).exists():
            raise Conflict(f"{user.get_username()} is already a member", code="already_member")
        membership = Membership.objects.create(workspace_id=workspace_id, user=user, role=role)
        record_event(workspace_id, "member.updated", member_payload(membership))
    return membership


def member_update(*, workspace_id: int, by: User | None, user_id: int, role: str) -> Membership:
    """An owner (or an operator: `by` None) changes a member's role; the last owner cannot
    be demoted."""
    with workspace_transaction(workspace_id):
        if by is not None:
            _require_owner(workspace_id, by)
        membership = _membership(workspace_id, user_id)
        if membership.role == role:
            return membership
        if membership.role == Membership.Role.OWNER:
            _keep_an_owner(workspace_id, "demoted")
        membership.role = role
        membership.save(update_fields=["role"])
        record_event(workspace_id, "member.updated", member_payload(membership))
    return membership


def member_remove(*, workspace_id: int, by: User | None, user_id: int) -> None:
    """An owner (or an operator: `by` None) removes a member, or a member leaves; the last
    owner stays. The removed member's sockets on the workspace are closed by the
    `member.removed` event."""
    leaving = by is not None and by.pk == user_id
    with workspace_transaction(workspace_id):
        if by is not None and not leaving:
            _require_owner(workspace_id, by)
        membership = _membership(workspace_id, user_id)
        if membership.role == Membership.Role.OWNER:
            _keep_an_owner(workspace_id, "leave" if leaving else "removed")
        membership.delete()
        removed: MemberRemovedPayload = {"workspace": workspace_id, "user": user_id}
        record_event(workspace_id, "member.removed", removed)


def _require_owner(workspace_id: int, user: User) -> None:
    """Under the workspace lock: a role read here cannot change before the write commits."""
    role = (
        Membership.objects.filter(workspace_id=workspace_id, user=user.pk)
        .values_list("role", flat=True)
        .first()
    )
    if role is None:
        raise NotFound("No such workspace.", code="workspace_not_found")
    if role != Membership.Role.OWNER:
        raise Forbidden("only the workspace's owners manage its members", code="not_an_owner")


def _membership(workspace_id: int, user_id: int) -> Membership:
    membership = (
        Membership.objects.select_related("user")
        .filter(workspace_id=workspace_id, user_id=user_id)
        .first()
    )
    if membership is None:
        raise NotFound("No such member of this workspace.", code="member_not_found")
    return membership


def _keep_an_owner(workspace_id: int, what: str) -> None:
    owners = Membership.objects.filter(workspace_id=workspace_id, role=Membership.Role.OWNER)
    if owners.count() <= 1:
        verb = "leave" if what == "leave" else f"be {what}"
        raise Conflict(
            f"the last owner cannot {verb}; make another member an owner first",
            code="last_owner",
        )


def _find_user(*, username: str | None, email: str | None) -> User:
    users = get_user_model().objects.filter(is_active=True)
    matches = list(
        users.filter(username=username)[:2]
        if username is not None
        else users.filter(email__iexact=email)[:2]
    )
    if not matches:
        what = f"username {username!r}" if username is not None else f"email {email!r}"
        raise NotFound(f"No user with the {what}.", code="user_not_found")
    if len(matches) > 1:
        raise Conflict(
            "several users have that email address; add one by username",
            code="ambiguous_email",
        )
    user: User = matches[0]
    return user


def events_prune(*, older_than_hours: float | None = None) -> int:
    """Delete events older than the retention; clients that need them get a snapshot."""
    hours = (
        older_than_hours
        if older_than_hours is not None
        else settings.WORKBENCH_EVENT_RETENTION_HOURS
    )
    deleted, _ = Event.objects.filter(created_at__lt=now() - timedelta(hours=hours)).delete()
    return deleted
