"""Reads of workspaces and their event log, scoped to what a user may see (a non-member
gets NotFound, never 403)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.db.models import Case, OuterRef, QuerySet, Subquery, Value, When

from core import logs
from core.errors import NotFound
from core.models import Event, Membership, Workspace

if TYPE_CHECKING:
    from django.contrib.auth.models import User


def workspace_list_for_user(*, user: User) -> QuerySet[Workspace]:
    role = Membership.objects.filter(workspace=OuterRef("pk"), user=user).values("role")[:1]
    return (
        Workspace.objects.filter(memberships__user=user)
        .annotate(my_role=Subquery(role))
        .order_by("id")
    )


def workspace_is_member(*, workspace_id: int, user: User) -> bool:
    if not user.is_authenticated:
        return False
    return Membership.objects.filter(workspace_id=workspace_id, user=user).exists()


def workspace_get_for_user(*, workspace_id: int, user: User) -> Workspace:
    workspace = workspace_list_for_user(user=user).filter(pk=workspace_id).first()
    if workspace is None:
        raise NotFound("No such workspace.", code="workspace_not_found")
    logs.bind(workspace=workspace.pk)
    return workspace


def member_list(*, workspace_id: int, user: User) -> QuerySet[Membership]:
    """A workspace's members, for one of them (NotFound for anyone else)."""
    workspace_get_for_user(workspace_id=workspace_id, user=user)
    return members_of(workspace_id=workspace_id)


def members_of(*, workspace_id: int) -> QuerySet[Membership]:
    """A workspace's members, owners first, then in the order they joined."""
    owners_first = Case(When(role=Membership.Role.OWNER, then=Value(0)), default=Value(1))
    return (
        Membership.objects.filter(workspace_id=workspace_id)
        .select_related("user")
        .order_by(owners_first, "created_at", "pk")
    )


def events_after(*, workspace_id: int, seq: int, limit: int = 1000) -> list[Event] | None:
    """Events after `seq`, in order; None if more than `limit` or some were pruned (the
    client needs a snapshot). Seqs are gapless, so how far behind a client is comes from
    the counter alone: a resume too far back reads no rows only to discard them."""
    current = Workspace.objects.filter(pk=workspace_id).values_list("event_seq", flat=True)
    if not current:
        return None
    behind = current[0] - seq
    if behind > limit:
        return None
    newer = Event.objects.filter(workspace_id=workspace_id, seq__gt=seq, seq__lte=current[0])
    events = list(newer.order_by("seq"))
    if len(events) != max(behind, 0):  # pruned (the counter and its rows commit together)
        return None
    return events
