"""Workbench tabs (one agent session each) and their transcripts."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from core.models import Workspace
from sandboxes.models import Sandbox
from tasks_app.models import Task


class TabState(models.TextChoices):
    """States of a workbench tab.

    pending_provision ──► pending_session_create ──► ready
            │                       │                  │
            └──────────► error ◄────┘◄─────────────────┘ (sandbox or session lost)
                           │ retry
                           └──► pending_provision | pending_session_create
    any state ──close──► closed   (terminal)
    """

    PENDING_PROVISION = "pending_provision"
    PENDING_SESSION_CREATE = "pending_session_create"
    READY = "ready"
    ERROR = "error"
    CLOSED = "closed"


PENDING_STATES = frozenset({TabState.PENDING_PROVISION, TabState.PENDING_SESSION_CREATE})
OPEN_STATES = frozenset(set(TabState) - {TabState.CLOSED})

# The one declaration of which transitions exist; services check against it.
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    TabState.PENDING_PROVISION: frozenset(
        {TabState.PENDING_SESSION_CREATE, TabState.ERROR, TabState.CLOSED}
    ),
    TabState.PENDING_SESSION_CREATE: frozenset({TabState.READY, TabState.ERROR, TabState.CLOSED}),
    TabState.READY: frozenset({TabState.ERROR, TabState.CLOSED}),
    TabState.ERROR: frozenset(
        {TabState.PENDING_PROVISION, TabState.PENDING_SESSION_CREATE, TabState.CLOSED}
    ),
    TabState.CLOSED: frozenset(),
}


class TabErrorCode(models.TextChoices):
    PROVISION_FAILED = "provision_failed"
    SESSION_FAILED = "session_failed"
    SANDBOX_LOST = "sandbox_lost"
    TIMEOUT = "timeout"
    STALLED = "stalled"
    TASK_ARCHIVED = "task_archived"


class WorkbenchTab(models.Model):
    # A durable synthetic id issued at creation; the row is updated in place later.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="tabs")
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="tabs")
    sandbox = models.ForeignKey(
        Sandbox, null=True, blank=True, on_delete=models.SET_NULL, related_name="tabs"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    title = models.CharField(max_length=200, blank=True, default="")
    agent = models.CharField(max_length=64)
    state = models.CharField(
        max_length=32, choices=TabState.choices, default=TabState.PENDING_PROVISION
    )
    error_code = models.CharField(max_length=64, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    session_id = models.CharField(max_length=200, blank=True, default="")
    # The ACP server id on the sandbox-agent server: deterministic per tab and attempt, so a
    # redelivered session step finds the server it already created instead of making another.
    acp_server_id = models.CharField(max_length=200, blank=True, default="")
    # Where the next turn reads the session's SSE feed from (it replays history otherwise).
    acp_last_event_id = models.CharField(max_length=64, blank=True, default="")
    # The agent's model for this tab's session ("" for the agent's default): applied when
    # the session is created, and to the live session where the agent allows it.
    model = models.CharField(max_length=200, blank=True, default="")
    # The model the live session was given ("" while it has none, or runs the default).
    session_model = models.CharField(max_length=200, blank=True, default="")
    # Bumped by every retry; work dispatched for an older attempt finds it stale and stops.
    attempt = models.PositiveIntegerField(default=1)
    # How many times the reconciler re-dispatched this attempt's work, and when it last did:
    # a stall is counted from the later of this and state_changed_at (a draft saved into a
    # stuck tab is no progress).
    redrives = models.PositiveIntegerField(default=0)
    redriven_at = models.DateTimeField(null=True, blank=True)
    # How many times this attempt's session step started (a crash loop is cut off).
    session_starts = models.PositiveIntegerField(default=0)
    # NULL, not "", when absent: the unique constraint below must ignore tabs without a key.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    state_changed_at = models.DateTimeField(auto_now_add=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    # When the agent turn now running started (a prompt of this tab moved to `sending`);
    # NULL when none runs. Set and cleared with the prompt's own transitions, so a page
    # that loads mid-turn shows it from the snapshot (its messages are not in it).
    running_since = models.DateTimeField(null=True, blank=True)
    # When a closed tab's session (acp_server_id) was torn down; the reconciler sweeps closed
    # tabs without it, so a lost teardown message leaks no session.
    session_closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["task", "created_by", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="tab_idempotency_key_unique",
            )
        ]
        indexes = [
            # tab_list_for_task and the workbench snapshot: a task's open tabs in order.
            models.Index(fields=["task", "state", "created_at"], name="tab_task_state"),
            # The reconciler: pending tabs whose state has not changed for a while.
            models.Index(fields=["state", "state_changed_at"], name="tab_state_age"),
            # tab_create's per-user limit: a user's open tabs, however many they closed.
            models.Index(fields=["created_by", "state"], name="tab_creator_state"),
        ]

    def __str__(self) -> str:
        return f"tab {self.id} ({self.state})"


class TabUserState(models.Model):
    """One member's own state of a tab: unread and draft are per user (DESIGN)."""

    tab = models.ForeignKey(WorkbenchTab, on_delete=models.CASCADE, related_name="user_states")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    unread = models.BooleanField(default=False)
    draft = models.TextField(blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tab", "user"], name="one_tab_state_per_user")
        ]
        indexes = [
            # A snapshot or a tab list: one user's states of many tabs.
            models.Index(fields=["user", "tab"], name="tab_state_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} on {self.tab_id}"


class MessageRole(models.TextChoices):
    USER = "user"
    AGENT = "agent"


class MessageState(models.TextChoices):
    """user: queued -> sending -> complete | failed. agent: streaming -> complete | failed."""

    QUEUED = "queued"
    SENDING = "sending"
    STREAMING = "streaming"
    COMPLETE = "complete"
    FAILED = "failed"


MESSAGE_TRANSITIONS: dict[str, frozenset[str]] = {
    MessageState.QUEUED: frozenset({MessageState.SENDING, MessageState.FAILED}),
    # A prompt abandoned by a dead worker is taken again (sending -> sending).
    MessageState.SENDING: frozenset(
        {MessageState.SENDING, MessageState.COMPLETE, MessageState.FAILED}
    ),
    MessageState.STREAMING: frozenset({MessageState.COMPLETE, MessageState.FAILED}),
    MessageState.COMPLETE: frozenset(),
    MessageState.FAILED: frozenset(),
}


class Message(models.Model):
    """One entry of a tab's transcript: a user prompt or an agent reply."""

    tab = models.ForeignKey(WorkbenchTab, on_delete=models.CASCADE, related_name="messages")
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    role = models.CharField(max_length=16, choices=MessageRole.choices)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    reply_to = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replies"
    )
    text = models.TextField(blank=True, default="")
    state = models.CharField(max_length=16, choices=MessageState.choices)
    error_message = models.TextField(blank=True, default="")
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            # The delivery queue: a tab's oldest queued (or abandoned sending) message.
            models.Index(fields=["tab", "state", "id"], name="message_tab_state"),
        ]

    def __str__(self) -> str:
        return f"{self.role} message {self.pk} ({self.state})"
