"""Fuzz every operation of the served OpenAPI schema against the real Daphne (Schemathesis).

Each operation gets schema-valid and schema-invalid requests with a workspace owner's token;
some of them carry the ids of the owner's real workspace, task and tab in their path, so
requests reach real objects as well as missing ones. Every response must be no 5xx, have a
documented status code and content type, and match its documented schema.

Schemathesis' own pytest integration (`from_fixture`/`parametrize`) touches a pytest
internal that pytest 9 removed (`Node._nodeid`), so the operations are parametrized here and
each is driven through the documented Python API (`APIOperation.as_strategy`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from core.models import Membership
from sandboxes.models import Sandbox
from sandboxes.providers.local import LocalProvider
from sandboxes.services import handle_of
from tasks_app import services as task_services
from tests.factories import MembershipFactory, UserFactory, WorkspaceFactory
from workbench import services

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Per operation; WORKBENCH_FUZZ_EXAMPLES raises it for a longer hunt.
MAX_EXAMPLES = int(os.environ.get("WORKBENCH_FUZZ_EXAMPLES", "25"))


def _operations() -> list[tuple[str, str]]:
    """(method, path) of every operation, read from the same generator that serves the schema."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return [
        (method.upper(), path)
        for path, item in schema["paths"].items()
        for method in item
        if path != "/api/docs/"  # HTML for people, not JSON
    ]


@pytest.fixture(scope="session")
def served_schema(daphne_server):
    """The schema as Daphne serves it (requests go to the same server)."""
    return schemathesis.openapi.from_url(f"{daphne_server.url}/api/schema/?format=json")


@pytest.fixture
def owner(daphne_server, celery_worker, integration_run) -> Iterator[dict[str, Any]]:
    """A workspace owner's token, and the ids of their real workspace, task and tab."""
    user = UserFactory(username="fuzzer")
    workspace = WorkspaceFactory(name="Fuzzed")
    MembershipFactory(workspace=workspace, user=user, role=Membership.Role.OWNER)
    task = task_services.task_create(workspace_id=workspace.pk, user=user, title="fuzzed")
    tab, _ = services.tab_create(user=user, task=task)
    yield {
        "headers": {"Authorization": f"Token {Token.objects.create(user=user).key}"},
        "ids": {"workspace_id": workspace.pk, "task_id": task.pk, "tab_id": str(tab.pk)},
    }
    # Stop every sandbox-agent server the fuzzed requests made the worker start.
    provider = LocalProvider(root=integration_run.sandbox_root)
    for sandbox in Sandbox.objects.all():
        provider.destroy(sandbox.key, handle_of(sandbox) if sandbox.base_url else None)


@pytest.mark.parametrize(("method", "path"), _operations())
def test_every_operation_answers_as_documented(method, path, served_schema, owner) -> None:
    operation = served_schema[path][method]
    real = {
        parameter.name: owner["ids"][parameter.name]
        for parameter in operation.path_parameters
        if parameter.name in owner["ids"]
    }
    cases = st.one_of(
        *(operation.as_strategy(mode) for mode in GenerationMode),
        *(operation.as_strategy(mode, path_parameters=real) for mode in GenerationMode if real),
    ).filter(
        # Daphne's HTTP layer (Twisted) parses multipart bodies itself and answers a malformed
        # one with a bare 400 (no headers, no body) before the application sees the request:
        # nothing the API's schema could describe.
        lambda case: not (case.media_type or "").startswith("multipart/")
    )

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(case=cases)
    def fuzz(case) -> None:
        case.call_and_validate(headers=owner["headers"], checks=CHECKS)

    fuzz()
