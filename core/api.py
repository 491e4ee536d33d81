"""What every app's API views share: the signed-in member, query flags, validated bodies,
and the error body's schema (core.errors builds the body itself)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotAuthenticated

from core.error_codes import codes_of, describe, schema_extension

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from rest_framework.request import Request


def member(request: Request) -> User:
    """The signed-in user of a request that passed IsAuthenticated (every view's default
    permission), typed as such."""
    from django.contrib.auth.models import User

    user = request.user
    if not isinstance(user, User):
        raise NotAuthenticated()
    return user


def query_flag(request: Request, name: str) -> bool:
    """A boolean query parameter (?include_archived=true)."""
    return request.query_params.get(name, "").lower() in {"1", "true", "yes"}


def validated(serializer_class: type[serializers.Serializer[Any]], data: Any) -> dict[str, Any]:
    """The body checked by `serializer_class`; a 400 in the one error shape otherwise."""
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    checked: dict[str, Any] = serializer.validated_data
    return checked


ErrorSerializer = inline_serializer(
    "Error",
    {
        "error": inline_serializer(
            "ErrorBody",
            {
                "code": serializers.CharField(),
                "message": serializers.CharField(),
                "fields": serializers.DictField(),
            },
        )
    },
)


def documented(
    responses: dict[int, Any], *codes: str, body: bool = False, public: bool = False
) -> dict[str, Any]:
    """`responses` and `extensions` for an operation's extend_schema: its own responses, and
    one error response per status describing the codes the operation may answer (its own,
    a body's, any request's; core/error_codes.py says what each means)."""
    listed = codes_of(*codes, body=body, public=public)
    errors = {
        status: OpenApiResponse(ErrorSerializer, description=text)
        for status, text in describe(listed).items()
    }
    return {"responses": {**responses, **errors}, "extensions": schema_extension(listed)}
