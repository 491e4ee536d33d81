"""Writes of workspaces, their members and their event log."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.utils.timezone import now

from core.models import Event, Membership, Workspace

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
    membership, _ = Membership.objects.get_or_create(
        workspace_id=workspace_id, user=user, defaults={"role": role}
    )
    return membership


def events_prune(*, older_than_hours: float | None = None) -> int:
    """Delete events older than the retention; clients that need them get a snapshot."""
    hours = (
        older_than_hours
        if older_than_hours is not None
        else settings.WORKBENCH_EVENT_RETENTION_HOURS
    )
    deleted, _ = Event.objects.filter(created_at__lt=now() - timedelta(hours=hours)).delete()
    return deleted
