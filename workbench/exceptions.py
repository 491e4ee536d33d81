"""Domain errors: each carries a machine `code` and a human `message`; the API maps them."""

from __future__ import annotations


class DomainError(Exception):
    status_code = 400
    default_code = "invalid"

    def __init__(self, message: str, *, code: str | None = None, fields: dict | None = None):
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
