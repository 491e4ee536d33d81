"""Output shapes for sandboxes and their steps (REST and websocket alike). No secrets."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict, cast

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.representation import DirectRepresentation, iso_datetime
from sandboxes.models import ProvisioningStep, Sandbox

if TYPE_CHECKING:
    from datetime import tzinfo


class ProvisioningStepSerializer(DirectRepresentation):
    """A step as REST and the stream carry it; built by hand (core/representation.py): a
    page of 50 tasks carries some 200 of them."""

    sandbox = serializers.IntegerField(source="sandbox_id", read_only=True)
    duration_ms = serializers.IntegerField(read_only=True, allow_null=True)

    def to_representation(self, step: ProvisioningStep) -> dict[str, Any]:
        return step_fields(step, timezone.get_current_timezone())

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


def step_fields(step: ProvisioningStep, zone: tzinfo) -> dict[str, Any]:
    """ProvisioningStepSerializer's output, in the active time zone `zone`."""
    duration = step.duration_ms
    return {
        "id": step.pk,
        "sandbox": step.sandbox_id,
        "name": step.name,
        "outcome": str(step.outcome),  # a TextChoices member set in memory: its value
        "detail": step.detail,
        "log": step.log,
        "started_at": iso_datetime(step.started_at, zone),
        "finished_at": iso_datetime(step.finished_at, zone),
        "duration_ms": None if duration is None else int(duration),
    }


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


class SandboxOutputSerializer(DirectRepresentation):
    """A sandbox with its plan and steps; built by hand (core/representation.py): a task
    list or a snapshot page carries one per task."""

    task = serializers.IntegerField(source="task_id", read_only=True)
    steps = ProvisioningStepSerializer(many=True, read_only=True)
    models = serializers.SerializerMethodField()
    plan = PlannedStepSerializer(many=True, read_only=True)

    @extend_schema_field(ModelChoiceSerializer(many=True))
    def get_models(self, sandbox: Sandbox) -> list[ModelChoice]:
        return [{"value": value, "name": name} for value, name in sandbox.agent_models]

    def to_representation(self, sandbox: Sandbox) -> dict[str, Any]:
        zone = timezone.get_current_timezone()
        return {
            "id": sandbox.pk,
            "task": sandbox.task_id,
            "provider": sandbox.provider,
            "agent": sandbox.agent,
            "state": str(sandbox.state),
            "error_code": str(sandbox.error_code),
            "error_message": sandbox.error_message,
            "version": sandbox.version,
            "created_at": iso_datetime(sandbox.created_at, zone),
            "ready_at": iso_datetime(sandbox.ready_at, zone),
            "destroyed_at": iso_datetime(sandbox.destroyed_at, zone),
            "models": self.get_models(sandbox),
            "default_model": sandbox.default_model,
            "plan": [
                {
                    "name": _str_or_none(step["name"]),
                    "estimate_ms": _int_or_none(step.get("estimate_ms")),
                }
                for step in sandbox.plan
            ],
            "steps": [step_fields(step, zone) for step in sandbox.steps.all()],
        }

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


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _int_or_none(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]
