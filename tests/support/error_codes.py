"""The error codes the OpenAPI schema lists for each operation, and the check every test's
API errors go through (tests/conftest.py): an answered code its operation does not list is
a failure, so the schema (and docs/api.md, made from the same table) cannot fall behind."""

from __future__ import annotations

import re
from functools import cache
from typing import Any


@cache
def listed_codes() -> dict[tuple[str, str], frozenset[str]]:
    """(METHOD, /path/{param}/) -> the codes its operation lists (x-error-codes)."""
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {
        (method.upper(), path): frozenset(operation.get("x-error-codes", ()))
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
    }


def schema_path(route: str) -> str:
    """A URL pattern's route ('api/tabs/<uuid:tab_id>/') as the schema names its path."""
    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)


def undocumented(answers: list[tuple[str, str, int, str]]) -> list[str]:
    """The answers (method, route, status, code) whose code their operation does not list.
    Routes the schema does not describe (the bench's, the pages') are not judged."""
    found = []
    for method, route, status, code in answers:
        listed = listed_codes().get((method, schema_path(route)))
        if listed is not None and code not in listed:
            found.append(f"{method} /{route} answered {status} {code!r}, not in {sorted(listed)}")
    return found


def recorder(handler: Any, answers: list[tuple[str, str, int, str]]) -> Any:
    """DRF's exception handler, noting each error answer it makes."""

    def record(exc: Exception, context: dict[str, Any]) -> Any:
        response = handler(exc, context)
        request = context.get("request")
        match = getattr(request, "resolver_match", None)
        body = getattr(response, "data", None)
        if match is not None and isinstance(body, dict) and "error" in body:
            answers.append(
                (request.method, match.route, response.status_code, body["error"]["code"])
            )
        return response

    return record
