"""The snapshot behind every websocket connect, the task list and the admin's task list take
the same number of queries for 1 task as for 50 (each task with sandboxes, steps and tabs)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils.timezone import now

from sandboxes.models import ProvisioningStep, SandboxState, StepOutcome
from tests.factories import SandboxFactory, TabFactory, TaskFactory
from workbench import selectors
from workbench.models import TabState

pytestmark = pytest.mark.django_db


def add_tasks(workspace, count: int) -> None:
    """Tasks as a busy workspace has them: a failed attempt and a live one with steps
    (every other task), or only a failed one, and a few tabs."""
    for i in range(count):
        task = TaskFactory(workspace=workspace)
        failed = SandboxFactory(task=task, state=SandboxState.FAILED, error_code="clone_failed")
        step_of = failed
        if i % 2 == 0:
            step_of = SandboxFactory(task=task, state=SandboxState.READY)
        ProvisioningStep.objects.create(
            sandbox=step_of, name="clone", outcome=StepOutcome.SUCCEEDED, started_at=now()
        )
        for state in (TabState.READY, TabState.PENDING_PROVISION):
            TabFactory(task=task, state=state)


def queries(run) -> int:
    with CaptureQueriesContext(connection) as captured:
        run()
    return len(captured.captured_queries)


@pytest.mark.parametrize(
    "read",
    [
        pytest.param(
            lambda ws, client: selectors.workbench_snapshot(
                workspace=ws, user_id=ws.memberships.first().user_id
            ),
            id="snapshot",
        ),
        pytest.param(
            lambda ws, client: client.get(f"/api/workspaces/{ws.pk}/tasks/").json(),
            id="task list",
        ),
        pytest.param(
            lambda ws, client: client.get("/admin/tasks_app/task/").content, id="admin list"
        ),
    ],
)
def test_reads_take_as_many_queries_for_50_tasks_as_for_1(read, workspace, alice, client):
    alice.is_staff = alice.is_superuser = True
    alice.save()
    client.force_login(alice)
    add_tasks(workspace, 1)
    read(workspace, client)  # warm: sessions, content types
    one = queries(lambda: read(workspace, client))
    add_tasks(workspace, 49)
    fifty = queries(lambda: read(workspace, client))
    assert fifty == one, f"{one} queries for 1 task, {fifty} for 50"


def test_the_batched_sandboxes_are_the_ones_a_task_alone_shows(workspace):
    """Live first, else the latest attempt, with its steps: as TaskOutputSerializer shows a
    single task."""
    from tasks_app.models import Task
    from tasks_app.serializers import TaskOutputSerializer

    add_tasks(workspace, 4)
    TaskFactory(workspace=workspace)  # no sandbox at all
    tasks = Task.objects.filter(workspace=workspace).order_by("pk")
    assert TaskOutputSerializer(tasks, many=True).data == [
        TaskOutputSerializer(task).data for task in tasks
    ]
    assert get_user_model().objects.exists()


def test_the_admin_list_shows_each_tasks_current_sandbox(workspace, alice, client):
    alice.is_staff = alice.is_superuser = True
    alice.save()
    client.force_login(alice)
    add_tasks(workspace, 2)  # one with a ready sandbox after a failed one, one failed only
    TaskFactory(workspace=workspace, title="never provisioned")
    page = client.get("/admin/tasks_app/task/").content.decode()
    assert page.count('<td class="field-sandbox_state">ready</td>') == 1
    assert page.count('<td class="field-sandbox_state">failed (clone_failed)</td>') == 1
    assert page.count('<td class="field-sandbox_state">-</td>') == 1
