"""The admin as an operator's console: a tab's current step and times to the second, a
failed tab's link to its sandbox and steps, archive / re-provision / destroy through the
services, and no raw delete that would bypass the state machine."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils.timezone import now

from core.models import Event
from sandboxes.models import ProvisioningStep, Sandbox, SandboxState, StepOutcome
from tests.factories import SandboxFactory, TabFactory, TaskFactory
from workbench.models import TabErrorCode, TabState, WorkbenchTab

pytestmark = pytest.mark.django_db

ADMIN = "/admin"


@pytest.fixture
def operator(client, alice):
    user = type(alice).objects.create_superuser("ops-kim", "op@example.org", "pw")
    client.force_login(user)
    return client


@pytest.fixture
def destroys(monkeypatch):
    """The destroy messages the services dispatch (no broker in unit tests)."""
    from workbench import workflows

    sent: list[int] = []
    monkeypatch.setattr(
        workflows, "start_sandbox_destroy", lambda *, sandbox_id: sent.append(sandbox_id)
    )
    return sent


def action(operator, model: str, name: str, ids: list) -> None:
    answer = operator.post(
        f"{ADMIN}/{model}/",
        {"action": name, "_selected_action": [str(pk) for pk in ids]},
        follow=True,
    )
    assert answer.status_code == 200


def test_the_tab_list_shows_the_current_step_and_times_to_the_second(operator, workspace):
    sandbox = SandboxFactory(task=TaskFactory(workspace=workspace))
    started = now() - timedelta(seconds=5)
    ProvisioningStep.objects.create(sandbox=sandbox, name="prepare_workspace", started_at=started)
    tab = TabFactory(task=sandbox.task, state=TabState.PENDING_PROVISION)
    page = operator.get(f"{ADMIN}/workbench/workbenchtab/").content.decode()
    assert "prepare_workspace (running)" in page
    stamp = tab.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    assert stamp in page


def test_a_failed_tab_links_to_its_failed_sandbox_and_its_steps(operator, workspace):
    task = TaskFactory(workspace=workspace)
    sandbox = SandboxFactory(task=task, state=SandboxState.FAILED, error_code="clone_failed")
    ProvisioningStep.objects.create(
        sandbox=sandbox,
        name="prepare_workspace",
        outcome=StepOutcome.FAILED,
        detail="git clone failed: the repository does not exist",
        started_at=now(),
        finished_at=now(),
    )
    tab = TabFactory(task=task, state=TabState.ERROR, error_code="provision_failed")
    page = operator.get(f"{ADMIN}/workbench/workbenchtab/{tab.pk}/change/").content.decode()
    assert f"/admin/sandboxes/sandbox/{sandbox.pk}/change/" in page
    assert "clone_failed" in page
    assert "git clone failed: the repository does not exist" in page


def test_nothing_the_workflow_owns_can_be_deleted_by_hand(operator, workspace):
    tab = TabFactory(task=TaskFactory(workspace=workspace), state=TabState.READY)
    sandbox = SandboxFactory(task=tab.task, state=SandboxState.READY)
    for path in (
        f"workbench/workbenchtab/{tab.pk}",
        f"tasks_app/task/{tab.task_id}",
        f"sandboxes/sandbox/{sandbox.pk}",
        f"core/workspace/{workspace.pk}",
    ):
        assert operator.post(f"{ADMIN}/{path}/delete/", {"post": "yes"}).status_code == 403
    listed = operator.get(f"{ADMIN}/workbench/workbenchtab/").content.decode()
    assert "delete_selected" not in listed
    assert WorkbenchTab.objects.filter(pk=tab.pk).exists()
    assert Sandbox.objects.filter(pk=sandbox.pk).exists()


def test_archiving_from_the_admin_closes_tabs_and_destroys_the_sandbox(
    operator, workspace, destroys, django_capture_on_commit_callbacks
):
    sandbox = SandboxFactory(task=TaskFactory(workspace=workspace), state=SandboxState.READY)
    tab = TabFactory(task=sandbox.task, sandbox=sandbox, state=TabState.READY)
    with django_capture_on_commit_callbacks(execute=True):
        action(operator, "tasks_app/task", "archive_tasks", [sandbox.task_id])
    assert WorkbenchTab.objects.get(pk=tab.pk).state == TabState.CLOSED
    assert Sandbox.objects.get(pk=sandbox.pk).state == SandboxState.DESTROYING
    assert destroys == [sandbox.pk]


def test_destroying_a_sandbox_fails_its_tabs_with_a_retry_and_tells_clients(
    operator, workspace, destroys, django_capture_on_commit_callbacks
):
    sandbox = SandboxFactory(task=TaskFactory(workspace=workspace), state=SandboxState.READY)
    ready = TabFactory(task=sandbox.task, sandbox=sandbox, state=TabState.READY)
    waiting = TabFactory(task=sandbox.task, state=TabState.PENDING_PROVISION)
    with django_capture_on_commit_callbacks(execute=True):
        action(operator, "sandboxes/sandbox", "discard_sandboxes", [sandbox.pk])
    for tab in (ready, waiting):
        failed = WorkbenchTab.objects.get(pk=tab.pk)
        assert (failed.state, failed.error_code) == (TabState.ERROR, TabErrorCode.SANDBOX_LOST)
        assert "destroyed by an operator" in failed.error_message
        assert "ops-kim" not in failed.error_message  # tenants never see who did it
    assert destroys == [sandbox.pk]
    names = set(Event.objects.filter(workspace=workspace).values_list("name", flat=True))
    assert {"sandbox.updated", "tab.updated"} <= names


def test_reprovisioning_a_task_gives_it_a_fresh_attempt_and_retries_its_tabs(
    operator, workspace, destroys, dispatched, django_capture_on_commit_callbacks
):
    sandbox = SandboxFactory(task=TaskFactory(workspace=workspace), state=SandboxState.READY)
    ready = TabFactory(task=sandbox.task, sandbox=sandbox, state=TabState.READY)
    broken = TabFactory(task=sandbox.task, state=TabState.ERROR, error_code="session_failed")
    with django_capture_on_commit_callbacks(execute=True):
        action(operator, "tasks_app/task", "reprovision_tasks", [sandbox.task_id])
    for tab in (ready, broken):
        retried = WorkbenchTab.objects.get(pk=tab.pk)
        assert (retried.state, retried.attempt) == (TabState.PENDING_PROVISION, tab.attempt + 1)
    fresh = Sandbox.objects.filter(task=sandbox.task).exclude(pk=sandbox.pk).get()
    assert fresh.state == SandboxState.PROVISIONING
    assert destroys == [sandbox.pk]
    assert dispatched.runs.call_count == 1  # the new attempt's one run


def test_an_operator_renames_a_task_through_the_service(operator, workspace):
    task = TaskFactory(workspace=workspace, repository="")
    answer = operator.post(f"{ADMIN}/tasks_app/task/{task.pk}/change/", {"title": "Renamed"})
    assert answer.status_code == 302, answer.content[:1500]
    assert Event.objects.filter(workspace=workspace, name="task.updated").exists()
