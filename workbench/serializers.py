"""Input and output shapes. Output serializers are shared by REST and the websocket stream."""

from __future__ import annotations

from rest_framework import serializers

from workbench.models import WorkbenchTab, Workspace


class WorkspaceOutputSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField()

    class Meta:
        model = Workspace
        fields = ["id", "name", "role", "created_at"]
        read_only_fields = fields

    def get_role(self, workspace: Workspace) -> str | None:
        return getattr(workspace, "my_role", None)


class WorkspaceCreateInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)


class TabOutputSerializer(serializers.ModelSerializer):
    workspace = serializers.IntegerField(source="workspace_id", read_only=True)
    task = serializers.IntegerField(source="task_id", read_only=True)
    sandbox = serializers.IntegerField(source="sandbox_id", read_only=True, allow_null=True)
    id = serializers.UUIDField(read_only=True)

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
            "draft",
            "unread",
            "attempt",
            "version",
            "created_at",
            "updated_at",
            "state_changed_at",
            "ready_at",
            "closed_at",
        ]
        read_only_fields = fields


class TabCreateInputSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class TabUpdateInputSerializer(serializers.Serializer):
    """Only these are editable; state, session and error fields are the workflow's."""

    title = serializers.CharField(max_length=200, required=False, allow_blank=True)
    draft = serializers.CharField(
        max_length=100_000, required=False, allow_blank=True, trim_whitespace=False
    )
    unread = serializers.BooleanField(required=False)

    def validate(self, attrs: dict) -> dict:
        unknown = set(self.initial_data) - set(self.fields)
        if unknown:
            raise serializers.ValidationError(
                {name: ["this field is read-only or unknown"] for name in sorted(unknown)}
            )
        if not attrs:
            raise serializers.ValidationError("nothing to update: send title, draft or unread")
        return attrs


class MessageOutputSerializer(serializers.ModelSerializer):
    tab = serializers.UUIDField(source="tab_id", read_only=True)
    workspace = serializers.IntegerField(source="workspace_id", read_only=True)
    reply_to = serializers.IntegerField(source="reply_to_id", read_only=True, allow_null=True)

    class Meta:
        from workbench.models import Message

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


class MessageCreateInputSerializer(serializers.Serializer):
    text = serializers.CharField(trim_whitespace=False)

    def validate_text(self, value: str) -> str:
        from django.conf import settings

        if not value.strip():
            raise serializers.ValidationError("a message needs some text")
        limit = settings.WORKBENCH_MAX_MESSAGE_CHARS
        if len(value) > limit:
            raise serializers.ValidationError(
                f"a message is limited to {limit} characters (this one has {len(value)})"
            )
        return value
