"""Workspaces, their members and their event log: what every other app stands on.

A workspace is the unit of tenancy (every row of the apps above belongs to one, through its
task) and of ordering (its event log is gapless, numbered under its row's lock).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Workspace(models.Model):
    name = models.CharField(max_length=200)
    # The last event sequence number issued; bumped under the row lock by record_event.
    event_seq = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner"
        MEMBER = "member"

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workspace", "user"], name="one_membership_per_user")
        ]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.workspace_id} ({self.role})"


class Event(models.Model):
    """One entry of a workspace's ordered, gapless event log (the truth behind the stream)."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="events")
    seq = models.BigIntegerField()
    name = models.CharField(max_length=64)
    data = models.JSONField()
    # The user ids a private event is for (a member's own unread or draft); NULL for all.
    audience = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["seq"]
        constraints = [
            # Also the index for resume: events of a workspace after a given seq.
            models.UniqueConstraint(fields=["workspace", "seq"], name="event_seq_unique")
        ]
        indexes = [
            # prune_events: events older than the retention.
            models.Index(fields=["created_at"], name="event_created"),
        ]

    def __str__(self) -> str:
        return f"{self.workspace_id}#{self.seq} {self.name}"
