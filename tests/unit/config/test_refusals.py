"""Refusals Django makes before any view still answer the API's JSON error body."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_a_host_the_service_does_not_answer_for_gets_the_json_error_body(client):
    answer = client.get("/api/workspaces/", HTTP_HOST="attacker.example.org")
    assert answer.status_code == 400
    assert answer["Content-Type"] == "application/json"
    assert answer.json()["error"]["code"] == "bad_request"
