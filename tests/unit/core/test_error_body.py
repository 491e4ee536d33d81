"""The error body is built in one place (core.errors.error_body), and the OpenAPI schema's
description of it (core.api.ErrorSerializer) names the same fields."""

from __future__ import annotations

import typing

from core.api import ErrorSerializer
from core.errors import ErrorBody, ErrorDetail, error_body


def test_the_schema_describes_the_body_error_body_builds() -> None:
    body = error_body("conflict", "the tab changed meanwhile", {"title": ["too long"]})
    assert set(body) == set(typing.get_type_hints(ErrorBody)) == set(ErrorSerializer.fields)
    detail = ErrorSerializer.fields["error"]
    assert set(body["error"]) == set(typing.get_type_hints(ErrorDetail)) == set(detail.fields)
    assert body["error"] == {
        "code": "conflict",
        "message": "the tab changed meanwhile",
        "fields": {"title": ["too long"]},
    }
    assert error_body("not_found", "No such tab.")["error"]["fields"] == {}
