"""Output shapes for sandboxes and their steps (REST and websocket alike). No secrets."""

from __future__ import annotations

from rest_framework import serializers

from sandboxes.models import ProvisioningStep, Sandbox


class ProvisioningStepSerializer(serializers.ModelSerializer):
    sandbox = serializers.IntegerField(source="sandbox_id", read_only=True)
    duration_ms = serializers.IntegerField(read_only=True, allow_null=True)

    class Meta:
        model = ProvisioningStep
        fields = [
            "id",
            "sandbox",
            "name",
            "outcome",
            "detail",
            "started_at",
            "finished_at",
            "duration_ms",
        ]
        read_only_fields = fields


class SandboxOutputSerializer(serializers.ModelSerializer):
    task = serializers.IntegerField(source="task_id", read_only=True)
    steps = ProvisioningStepSerializer(many=True, read_only=True)

    class Meta:
        model = Sandbox
        # Never `token`, `base_url` or `pid`: they let anyone drive the sandbox directly.
        fields = [
            "id",
            "task",
            "provider",
            "agent",
            "state",
            "error_code",
            "error_message",
            "version",
            "created_at",
            "ready_at",
            "destroyed_at",
            "steps",
        ]
        read_only_fields = fields
