"""Input and output shapes. Output serializers are shared by REST and the websocket stream."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict, cast

from django.utils import timezone
from rest_framework import serializers
from rest_framework.authtoken.serializers import AuthTokenSerializer

from core.representation import DirectRepresentation, iso_datetime
from core.serializers import StrictInputSerializer
from tasks_app.serializers import TaskCreateInputSerializer, TaskOutputSerializer
from workbench.models import Message, TabUserState, WorkbenchTab


class AuthTokenInputSerializer(StrictInputSerializer, AuthTokenSerializer):
    """POST /api/auth/token/: DRF's credentials check, on a strict body."""


class TabPayload(TypedDict):
    """The `tab.updated` event: what every member sees of a tab (no one's own state)."""

    id: str
    workspace: int
    task: int
    sandbox: int | None
    title: str
    agent: str
    state: str
    error_code: str
    error_message: str
    session_id: str
    model: str
    session_model: str
    attempt: int
    version: int
    created_at: str
    updated_at: str
    state_changed_at: str
    ready_at: str | None
    closed_at: str | None
    running_since: str | None


class MemberTabPayload(TabPayload):
    """A tab in REST answers and snapshots: with the asking member's own unread and draft."""

    unread: bool
    draft: str


class TabUserStatePayload(TypedDict):
    """The `tab.user_state` event, private to its audience: a member's own state of a tab.
    Only what changed is present (a reply marks many members unread in one event)."""

    tab: str
    unread: NotRequired[bool]
    draft: NotRequired[str]


class MessagePayload(TypedDict):
    """The `message.created` and `message.updated` events, and a transcript entry."""

    id: int
    tab: str
    workspace: int
    role: str
    text: str
    state: str
    error_message: str
    reply_to: int | None
    version: int
    created_at: str
    updated_at: str


def tab_payload(tab: WorkbenchTab) -> TabPayload:
    return cast("TabPayload", TabOutputSerializer(tab).data)


def message_payload(message: Message) -> MessagePayload:
    return cast("MessagePayload", MessageOutputSerializer(message).data)


_TAB_DATETIMES = (
    "created_at", "updated_at", "state_changed_at", "ready_at", "closed_at", "running_since"
)  # fmt: skip
_TAB_PLAIN = ("title", "agent", "state", "error_code", "error_message", "session_id", "model",
              "session_model", "attempt", "version")  # fmt: skip
_TAB_CHOICES = ("state", "error_code")


class TabOutputSerializer(DirectRepresentation):
    """A tab as REST answers it and events carry it.

    The fields below are the schema; `to_representation` builds the same dict directly.
    Every tab write serializes the tab once for its event and once for its response, and
    DRF's generic path (deep-copying the fields for each instance) cost ~0.8 ms of each
    request, more than any query in it (docs/benchmarks.md). A test holds the two equal.
    """

    workspace = serializers.IntegerField(source="workspace_id", read_only=True)
    task = serializers.IntegerField(source="task_id", read_only=True)
    sandbox = serializers.IntegerField(source="sandbox_id", read_only=True, allow_null=True)
    id = serializers.UUIDField(read_only=True)

    def to_representation(self, tab: WorkbenchTab) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(tab.pk),
            "workspace": tab.workspace_id,
            "task": tab.task_id,
            "sandbox": tab.sandbox_id,
        }
        for name in _TAB_PLAIN:
            data[name] = getattr(tab, name)
        for name in _TAB_CHOICES:  # a TextChoices member set in memory: its plain value
            data[name] = str(data[name])
        zone = timezone.get_current_timezone()
        for name in _TAB_DATETIMES:
            data[name] = iso_datetime(getattr(tab, name), zone)
        return data

    class Meta:
        model = WorkbenchTab
        fields = [
            "id",
            "workspace",
            "task",
            "sandbox",
            "title",
            "agent",
            "state",
            "error_code",
            "error_message",
            "session_id",
            "model",
            "session_model",
            "attempt",
            "version",
            "created_at",
            "updated_at",
            "state_changed_at",
            "ready_at",
            "closed_at",
            "running_since",
        ]
        read_only_fields = fields


class MemberTabOutputSerializer(TabOutputSerializer):
    """A tab as one member reads it over REST and in their snapshot: the shared fields and
    their own unread and draft (from the `user_state` the selector attached)."""

    unread = serializers.BooleanField(read_only=True)
    draft = serializers.CharField(read_only=True)

    def to_representation(self, tab: WorkbenchTab) -> dict[str, Any]:
        data = super().to_representation(tab)
        state: TabUserState | None = getattr(tab, "user_state", None)
        data["unread"] = state.unread if state is not None else False
        data["draft"] = state.draft if state is not None else ""
        return data

    class Meta(TabOutputSerializer.Meta):
        fields = [*TabOutputSerializer.Meta.fields, "unread", "draft"]
        read_only_fields = fields


class TabCreateInputSerializer(StrictInputSerializer):
    title = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


DRAFT_LIMIT_BYTES = 100_000


class TabUpdateInputSerializer(StrictInputSerializer):
    """Only these are editable; state, session and error fields are the workflow's. Title
    and model are the tab's (every member sees them); draft and unread are the caller's."""

    title = serializers.CharField(max_length=200, required=False, allow_blank=True)
    model = serializers.CharField(max_length=200, required=False, allow_blank=True)
    draft = serializers.CharField(
        max_length=100_000, required=False, allow_blank=True, trim_whitespace=False
    )
    unread = serializers.BooleanField(required=False)

    def validate_draft(self, value: str) -> str:
        # Bytes, not characters: a draft of astral characters, ASCII-escaped in its event,
        # would otherwise be ~12 bytes a character, past a websocket frame's 1 MiB.
        size = len(value.encode("utf-8"))
        if size > DRAFT_LIMIT_BYTES:
            raise serializers.ValidationError(
                f"a draft is limited to {DRAFT_LIMIT_BYTES} bytes of UTF-8 (this one has {size})"
            )
        return value

    def validate(self, attrs: dict) -> dict:
        if not attrs:
            raise serializers.ValidationError(
                "nothing to update: send title, model, draft or unread"
            )
        return attrs


class MessageOutputSerializer(serializers.ModelSerializer):
    tab = serializers.UUIDField(source="tab_id", read_only=True)
    workspace = serializers.IntegerField(source="workspace_id", read_only=True)
    reply_to = serializers.IntegerField(source="reply_to_id", read_only=True, allow_null=True)

    class Meta:
        model = Message
        fields = [
            "id",
            "tab",
            "workspace",
            "role",
            "text",
            "state",
            "error_message",
            "reply_to",
            "version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


def _prompt_text(value: str) -> str:
    from django.conf import settings

    if not value.strip():
        raise serializers.ValidationError("a message needs some text")
    limit = settings.WORKBENCH_MAX_MESSAGE_CHARS
    if len(value) > limit:
        raise serializers.ValidationError(
            f"a message is limited to {limit} characters (this one has {len(value)})"
        )
    return value


class MessageCreateInputSerializer(StrictInputSerializer):
    text = serializers.CharField(trim_whitespace=False)

    def validate_text(self, value: str) -> str:
        return _prompt_text(value)


class TaskStartInputSerializer(TaskCreateInputSerializer):
    """A task, and optionally what its agent should work on: with a `prompt`, the task's
    first tab is opened and the prompt queued there."""

    prompt = serializers.CharField(trim_whitespace=False, required=False)

    def validate_prompt(self, value: str) -> str:
        return _prompt_text(value)


class TaskStartedOutputSerializer(TaskOutputSerializer):
    """A task just created; with a `prompt`, also its first tab and that prompt (the view
    adds them: the schema documents the shape)."""

    first_tab = MemberTabOutputSerializer(
        read_only=True,
        allow_null=True,
        help_text="With a `prompt`: the task's first tab, a placeholder (else null).",
    )
    first_message = MessageOutputSerializer(
        read_only=True,
        allow_null=True,
        help_text="With a `prompt`: the prompt, queued in the first tab (else null).",
    )

    def to_representation(self, instance: Any) -> dict[str, Any]:
        # The task's hand-built dict lacks the two fields: DRF's own path has them.
        return self.generic_representation(instance)

    class Meta(TaskOutputSerializer.Meta):
        fields = [*TaskOutputSerializer.Meta.fields, "first_tab", "first_message"]
