"""The base of every API input shape (a JSON object of declared fields, each of its JSON
type), and the workspace's own input and output shapes.

DRF's serializers are lenient where an API should not be: they ignore unknown fields (a typo
is silently dropped), and their fields coerce (`CharField` turns 12 into "12", `BooleanField`
takes "yes" and 1). Every input serializer derives from `StrictInputSerializer` instead, so
each write route refuses all of these with a 400 in the API's one error shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from rest_framework import serializers
from rest_framework.fields import empty
from rest_framework.settings import api_settings

from core.models import Workspace

if TYPE_CHECKING:
    from drf_spectacular.openapi import AutoSchema

UNKNOWN_FIELD = "this field is read-only or unknown"

# The JSON types a field takes as they are. Checked in this order: first match wins.
_JSON_TYPES: tuple[tuple[type[serializers.Field[Any, Any, Any, Any]], type], ...] = (
    (serializers.BooleanField, bool),
    (serializers.CharField, str),
)


def json_type_name(value: object) -> str:
    """What a decoded JSON value is, in JSON's words ("null", "an array", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


class StrictInputSerializer(serializers.Serializer[Any]):
    """Refuses a body that is not an object, unknown or read-only fields, and values of
    another JSON type than the field's (before DRF's field coercion would accept them)."""

    def run_validation(self, data: Any = empty) -> Any:
        if not isinstance(data, Mapping):
            message = f"expected a JSON object, got {json_type_name(data)}"
            raise serializers.ValidationError({api_settings.NON_FIELD_ERRORS_KEY: [message]})
        writable = {name for name, field in self.fields.items() if not field.read_only}
        errors: dict[str, list[str]] = {
            name: [UNKNOWN_FIELD] for name in sorted(set(data) - writable)
        }
        for name in writable & set(data):
            field, value = self.fields[name], data[name]
            expected = next((kind for base, kind in _JSON_TYPES if isinstance(field, base)), None)
            if expected is not None and value is not None and not isinstance(value, expected):
                errors[name] = [str(field.error_messages["invalid"])]
        if errors:
            raise serializers.ValidationError(errors)
        return super().run_validation(data)


class NoInputSerializer(StrictInputSerializer):
    """For actions that take no input: no body, or an empty JSON object."""


class StrictInputSchema(OpenApiSerializerExtension):
    """In the OpenAPI schema, a strict input allows no properties but its own."""

    target_class = StrictInputSerializer
    match_subclasses = True

    def map_serializer(self, auto_schema: AutoSchema, direction: str) -> dict[str, Any]:
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        return {**schema, "additionalProperties": False}


class WorkspaceOutputSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    role = serializers.SerializerMethodField()

    class Meta:
        model = Workspace
        fields = ["id", "name", "role", "created_at"]
        read_only_fields = fields

    def get_role(self, workspace: Workspace) -> str | None:
        return getattr(workspace, "my_role", None)


class WorkspaceCreateInputSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=200)
