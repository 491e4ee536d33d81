"""The base of every API input shape (a JSON object of declared fields, each of its JSON
type), and the workspace's own input and output shapes.

DRF's serializers are lenient where an API should not be: they ignore unknown fields (a typo
is silently dropped), and their fields coerce (`CharField` turns 12 into "12", `BooleanField`
takes "yes" and 1). Every input serializer derives from `StrictInputSerializer` instead, so
each write route refuses all of these with a 400 in the API's one error shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypedDict

from drf_spectacular.extensions import OpenApiSerializerExtension
from rest_framework import serializers
from rest_framework.fields import empty
from rest_framework.settings import api_settings

from core.models import Membership, Workspace

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


class MemberPayload(TypedDict):
    """A workspace member: the `member.updated` event, and an entry of the members list."""

    workspace: int
    user: int
    username: str
    name: str
    role: str
    joined_at: str


class MemberRemovedPayload(TypedDict):
    """The `member.removed` event: the user's sockets on the workspace close (4403)."""

    workspace: int
    user: int


_DATETIME = serializers.DateTimeField()


def member_payload(membership: Membership) -> MemberPayload:
    user = membership.user
    return {
        "workspace": membership.workspace_id,
        "user": user.pk,
        "username": user.get_username(),
        "name": user.get_full_name(),
        "role": membership.role,
        "joined_at": _DATETIME.to_representation(membership.created_at),
    }


class MemberOutputSerializer(serializers.Serializer[Membership]):
    """The schema of member_payload (which builds the dict itself)."""

    workspace = serializers.IntegerField()
    user = serializers.IntegerField()
    username = serializers.CharField()
    name = serializers.CharField()
    role = serializers.ChoiceField(choices=Membership.Role.choices)
    joined_at = serializers.DateTimeField()

    def to_representation(self, instance: Membership) -> dict[str, Any]:
        return dict(member_payload(instance))


class MemberAddInputSerializer(StrictInputSerializer):
    """Who to add: a username or an email address (one of them), and their role."""

    username = serializers.CharField(max_length=150, required=False)
    email = serializers.EmailField(required=False)
    role = serializers.ChoiceField(
        choices=Membership.Role.choices, required=False, default=Membership.Role.MEMBER
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("username" in attrs) == ("email" in attrs):
            raise serializers.ValidationError("send a username or an email address, not both")
        return attrs


class MemberUpdateInputSerializer(StrictInputSerializer):
    role = serializers.ChoiceField(choices=Membership.Role.choices)
