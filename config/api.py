"""One error shape for the whole API: {"error": {"code", "message", "fields"}}."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.errors import DomainError, ErrorBody, error_body

logger = logging.getLogger(__name__)

# The database refused or timed out (its pool exhausted under overload, a restart, a lock
# held past SQLite's busy timeout): nothing was written, and a retry may well succeed.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)
RETRY_AFTER_SECONDS = 2
UNAVAILABLE_MESSAGE = "The database is busy or unreachable; nothing was changed. Retry shortly."


def _first_message(detail: Any) -> str:
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    if isinstance(detail, dict) and detail:
        key, value = next(iter(detail.items()))
        inner = _first_message(value)
        return inner if key == "non_field_errors" else f"{key}: {inner}"
    return str(detail)


def error_response(
    status_code: int, code: str, message: str, fields: dict | None = None
) -> Response:
    return Response(error_body(code, message, fields), status=status_code)


def too_large_error() -> ErrorBody:
    """The 413 body: Daphne's request (config/server.py), the ASGI handler and DRF send it."""
    limit = settings.WORKBENCH_MAX_BODY_BYTES
    message = f"Request bodies are limited to {limit} bytes; nothing was changed."
    return error_body("too_large", message)


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """Map domain, DRF and Django exceptions to the error shape; anything else is a logged 500."""
    if isinstance(exc, DomainError):
        return error_response(exc.status_code, exc.code, exc.message, exc.fields)
    if isinstance(exc, Http404):
        return error_response(404, "not_found", "Not found.")
    if isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        fields = detail if isinstance(detail, dict) else {"non_field_errors": detail}
        return error_response(400, "invalid", _first_message(detail), fields)
    if isinstance(exc, RequestDataTooBig):  # Django's own check (DATA_UPLOAD_MAX_MEMORY_SIZE)
        return Response(too_large_error(), status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    if isinstance(exc, DATABASE_UNAVAILABLE):
        logger.warning("database unavailable: %s", exc, exc_info=exc)
        response = error_response(503, "unavailable", UNAVAILABLE_MESSAGE)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    if isinstance(exc, exceptions.APIException):
        handled: Response | None = drf_exception_handler(exc, context)
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else str(exc.default_code)
        if handled is None:  # pragma: no cover - DRF handles every APIException
            return None
        handled.data = error_body(code, str(exc.detail))
        return handled
    logger.exception("unhandled API error", exc_info=exc)
    return error_response(status.HTTP_500_INTERNAL_SERVER_ERROR, "server_error", "Internal error.")
