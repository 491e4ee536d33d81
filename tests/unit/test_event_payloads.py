"""Each event's payload type (a TypedDict beside its serializer) names exactly the fields its
serializer produces and the stream's JSON Schema declares, so the three cannot drift apart."""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.utils.timezone import now

from sandboxes.models import ProvisioningStep
from sandboxes.serializers import (
    SandboxPayload,
    StepEventPayload,
    StepPayload,
    sandbox_payload,
    step_event_payload,
)
from tasks_app.serializers import TaskPayload, task_payload
from tests.factories import SandboxFactory, TabFactory
from workbench.models import Message, MessageRole, MessageState
from workbench.serializers import MessagePayload, TabPayload, message_payload, tab_payload

pytestmark = pytest.mark.django_db

SCHEMA = json.loads(
    (Path(settings.BASE_DIR) / "docs" / "schema" / "workbench-stream.schema.json").read_text()
)

# payload type -> the schema's definition of it
DEFINITIONS: dict[Any, str] = {
    TabPayload: "tab",
    TaskPayload: "task",
    SandboxPayload: "sandbox",
    StepPayload: "provisioningStep",
    StepEventPayload: "provisioningStepEvent",
    MessagePayload: "message",
}


def _schema_fields(definition: str) -> set[str]:
    node = SCHEMA["$defs"][definition]
    fields = set(node.get("properties", {}))
    for part in node.get("allOf", []):  # an extension of another definition
        if "$ref" in part:
            fields |= _schema_fields(part["$ref"].rsplit("/", 1)[1])
        fields |= set(part.get("properties", {}))
    return fields


@pytest.mark.parametrize("payload_type", list(DEFINITIONS), ids=lambda t: t.__name__)
def test_each_payload_type_names_the_fields_its_schema_declares(payload_type: Any) -> None:
    assert set(typing.get_type_hints(payload_type)) == _schema_fields(DEFINITIONS[payload_type])


def test_each_payload_function_returns_exactly_its_types_fields() -> None:
    sandbox = SandboxFactory()
    step = ProvisioningStep.objects.create(sandbox=sandbox, name="clone", started_at=now())
    tab = TabFactory(task=sandbox.task, sandbox=sandbox)
    message = Message.objects.create(
        tab=tab, workspace_id=tab.workspace_id, role=MessageRole.USER, state=MessageState.QUEUED
    )
    built: list[tuple[Any, dict[str, Any]]] = [
        (TabPayload, dict(tab_payload(tab))),
        (TaskPayload, dict(task_payload(sandbox.task))),
        (SandboxPayload, dict(sandbox_payload(sandbox))),
        (StepEventPayload, dict(step_event_payload(step, task_id=sandbox.task_id))),
        (MessagePayload, dict(message_payload(message))),
    ]
    for payload_type, payload in built:
        assert set(payload) == set(typing.get_type_hints(payload_type)), payload_type.__name__
    assert set(built[2][1]["steps"][0]) == set(typing.get_type_hints(StepPayload))
