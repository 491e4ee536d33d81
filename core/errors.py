"""Domain errors, each with a machine `code` and a human `message`, and the one error body
every HTTP answer of the service carries (config/api.py maps the errors to it)."""

from __future__ import annotations

from typing import Any, TypedDict


class ErrorDetail(TypedDict):
    code: str
    message: str
    fields: dict[str, Any]


class ErrorBody(TypedDict):
    """{"error": {"code", "message", "fields"}}: docs/schema and the OpenAPI schema say it."""

    error: ErrorDetail


def error_body(code: str, message: str, fields: dict[str, Any] | None = None) -> ErrorBody:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


class DomainError(Exception):
    status_code = 400
    default_code = "invalid"

    def __init__(
        self, message: str, *, code: str | None = None, fields: dict[str, Any] | None = None
    ):
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.fields = fields or {}


class InvalidInput(DomainError):
    status_code = 400
    default_code = "invalid"


class NotFound(DomainError):
    status_code = 404
    default_code = "not_found"


class InvalidTransition(DomainError):
    """A user asked for a transition the tab's current state does not allow (409)."""

    status_code = 409
    default_code = "invalid_transition"


class Conflict(DomainError):
    status_code = 409
    default_code = "conflict"


class Forbidden(DomainError):
    """A member asked for what their role does not allow (403; a non-member gets 404)."""

    status_code = 403
    default_code = "forbidden"
