"""Output shapes for sandboxes and their steps (REST and websocket alike). No secrets."""

from __future__ import annotations

from typing import TypedDict, cast

from drf_spectacular.utils import extend_schema_field
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
            "log",
            "started_at",
            "finished_at",
            "duration_ms",
        ]
        read_only_fields = fields


class StepPayload(TypedDict):
    """A provisioning step as REST and the stream carry it (ProvisioningStepSerializer)."""

    id: int
    sandbox: int
    name: str
    outcome: str
    detail: str
    log: str
    started_at: str
    finished_at: str | None
    duration_ms: int | None


class StepEventPayload(StepPayload):
    """The `provisioning.step` event: the step and its sandbox's task."""

    task: int


class PlannedStep(TypedDict):
    """A step a provisioning run will take, and how long it took in earlier runs."""

    name: str
    estimate_ms: int | None


class ModelChoice(TypedDict):
    """A model the sandbox's server offers for its agent."""

    value: str
    name: str


class SandboxPayload(TypedDict):
    """The `sandbox.updated` event, and a task's `sandbox` (SandboxOutputSerializer)."""

    id: int
    task: int
    provider: str
    agent: str
    state: str
    error_code: str
    error_message: str
    version: int
    created_at: str
    ready_at: str | None
    destroyed_at: str | None
    models: list[ModelChoice]
    default_model: str
    plan: list[PlannedStep]
    steps: list[StepPayload]


def step_event_payload(step: ProvisioningStep, *, task_id: int) -> StepEventPayload:
    step_data = cast("StepPayload", ProvisioningStepSerializer(step).data)
    return {**step_data, "task": task_id}


def sandbox_payload(sandbox: Sandbox) -> SandboxPayload:
    return cast("SandboxPayload", SandboxOutputSerializer(sandbox).data)


class ModelChoiceSerializer(serializers.Serializer[tuple[str, str]]):
    value = serializers.CharField()
    name = serializers.CharField()


class PlannedStepSerializer(serializers.Serializer[PlannedStep]):
    name = serializers.CharField()
    estimate_ms = serializers.IntegerField(allow_null=True)


class SandboxOutputSerializer(serializers.ModelSerializer):
    task = serializers.IntegerField(source="task_id", read_only=True)
    steps = ProvisioningStepSerializer(many=True, read_only=True)
    models = serializers.SerializerMethodField()
    plan = PlannedStepSerializer(many=True, read_only=True)

    @extend_schema_field(ModelChoiceSerializer(many=True))
    def get_models(self, sandbox: Sandbox) -> list[ModelChoice]:
        return [{"value": value, "name": name} for value, name in sandbox.agent_models]

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
            "models",
            "default_model",
            "plan",
            "steps",
        ]
        read_only_fields = fields
