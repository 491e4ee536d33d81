"""Editing a task: repository, branch and agent apply from its next provisioning attempt;
tabs opened meanwhile on its live sandbox run the agent that sandbox was made with."""

from __future__ import annotations

import pytest
from django.utils import timezone

from sandboxes.models import SandboxState
from tests.factories import SandboxFactory, TaskFactory

pytestmark = pytest.mark.django_db


def test_repository_branch_and_agent_are_edited_and_checked(client_for, workspace, alice):
    task = TaskFactory(workspace=workspace)
    client = client_for(alice)
    url = f"/api/tasks/{task.pk}/"
    edited = client.patch(url, {"branch": "feature", "agent": "mock"}, format="json")
    assert edited.status_code == 200, edited.json()
    assert (edited.json()["branch"], edited.json()["version"]) == ("feature", task.version + 1)
    for body in ({"agent": "nope"}, {"branch": "--upload-pack=x"}, {"provider": "remote"}, {}):
        refused = client.patch(url, body, format="json")
        assert refused.status_code == 400, body
    assert client.get(url).json()["branch"] == "feature"


def test_a_tab_on_a_live_sandbox_runs_its_agent_until_the_next_attempt(
    client_for, workspace, alice, dispatched, settings
):
    settings.WORKBENCH_AGENTS = ["mock", "other"]
    task = TaskFactory(workspace=workspace, agent="mock")
    SandboxFactory(task=task, state=SandboxState.READY, agent="mock")
    client = client_for(alice)
    edited = client.patch(f"/api/tasks/{task.pk}/", {"agent": "other"}, format="json")
    assert edited.status_code == 200, edited.json()
    tab = client.post(f"/api/tasks/{task.pk}/tabs/", {}, format="json").json()
    assert tab["agent"] == "mock"


def test_the_agents_list_names_each_agent_with_the_models_seen_in_my_workspaces(
    client_for, workspace, alice, charlie, settings
):
    settings.WORKBENCH_AGENTS = ["mock", "other"]
    mine = TaskFactory(workspace=workspace, agent="mock")
    SandboxFactory(
        task=mine,
        state=SandboxState.READY,
        agent="mock",
        ready_at=timezone.now(),
        agent_models=[["mock", "Mock"], ["mock-fast", "Mock Fast"]],
        default_model="mock",
    )
    # Another tenant's sandbox reports models for "other": not shown to alice.
    SandboxFactory(
        task=TaskFactory(agent="other"),
        state=SandboxState.READY,
        agent="other",
        ready_at=timezone.now(),
        agent_models=[["secret", "Secret"]],
    )
    agents = client_for(alice).get("/api/agents/").json()
    assert agents == [
        {
            "name": "mock",
            "models": [
                {"value": "mock", "name": "Mock"},
                {"value": "mock-fast", "name": "Mock Fast"},
            ],
            "default_model": "mock",
        },
        {"name": "other", "models": [], "default_model": ""},
    ]
