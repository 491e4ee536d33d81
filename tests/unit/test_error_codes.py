"""Every error the API answers is documented: each operation of the OpenAPI schema has a
summary and lists its codes (x-error-codes, and an error response per status saying what
each means), docs/api.md is made from the same table, and a test's answer with a code its
operation does not list fails that test (tests/conftest.py)."""

from __future__ import annotations

import uuid

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.settings import api_settings

from core.error_codes import CODES
from tests.support.error_codes import recorder, undocumented
from workbench.management.commands.write_api_docs import API_DOC, current_api_doc

pytestmark = pytest.mark.django_db

SCHEMA = SchemaGenerator().get_schema(request=None, public=True)
OPERATIONS = [
    (f"{method.upper()} {path}", operation)
    for path, operations in SCHEMA["paths"].items()
    for method, operation in operations.items()
    if path.startswith("/api/") and not path.startswith("/api/schema")
]


@pytest.mark.parametrize(("name", "operation"), OPERATIONS, ids=[n for n, _ in OPERATIONS])
def test_each_operation_has_a_summary_and_documents_each_code_it_lists(name, operation):
    assert operation.get("summary"), name
    codes = operation["x-error-codes"]
    for status in ("429", "503"):
        assert status in operation["responses"], (name, status)
    for code in codes:
        response = operation["responses"][str(CODES[code].status)]
        assert f"`{code}`: {CODES[code].meaning}" in response["description"], (name, code)


def test_an_operation_that_needs_credentials_says_401_with_both_codes():
    tab = next(op for name, op in OPERATIONS if name == "GET /api/tabs/{tab_id}/")
    description = tab["responses"]["401"]["description"]
    assert "`not_authenticated`" in description and "`authentication_failed`" in description


def test_the_api_doc_is_made_from_the_codes_and_is_up_to_date():
    assert API_DOC.read_text() == current_api_doc(), (
        "docs/api.md is out of date: run `python manage.py write_api_docs`"
    )
    for code in CODES:
        assert f"`{code}`" in API_DOC.read_text()


def test_an_answered_code_is_recorded_and_judged_against_its_operation(
    client_for, alice, monkeypatch
):
    answers: list[tuple[str, str, int, str]] = []
    monkeypatch.setattr(
        api_settings, "EXCEPTION_HANDLER", recorder(api_settings.EXCEPTION_HANDLER, answers)
    )
    assert client_for(alice).get(f"/api/tabs/{uuid.uuid4()}/").status_code == 404
    assert answers == [("GET", "api/tabs/<uuid:tab_id>/", 404, "tab_not_found")]
    assert undocumented(answers) == []
    # The same route answering a code its operation does not list is caught.
    wrong = [("GET", "api/tabs/<uuid:tab_id>/", 409, "tab_closed")]
    assert undocumented(wrong) == [
        "GET /api/tabs/<uuid:tab_id>/ answered 409 'tab_closed', not in "
        "['authentication_failed', 'bad_request', 'not_authenticated', 'tab_not_found', "
        "'throttled', "
        "'unavailable']"
    ]
