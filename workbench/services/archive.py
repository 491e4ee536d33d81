"""Archiving a task: its tabs close at once, its sandboxes are destroyed in the background."""

from __future__ import annotations

from core.locks import workspace_transaction
from sandboxes import services as sandbox_services
from sandboxes.selectors import sandboxes_to_destroy
from tasks_app import services as task_services
from tasks_app.models import Task
from workbench import workflows
from workbench.models import (
    OPEN_STATES,
    WorkbenchTab,
)
from workbench.services.tabs import tab_close


def task_archive(*, task_id: int) -> Task:
    """Archive at once: close the task's open tabs; destroy its sandbox in the background."""
    workspace_id = Task.objects.values_list("workspace_id", flat=True).get(pk=task_id)
    with workspace_transaction(workspace_id):
        task_services.task_mark_archived(task_id=task_id)
        for tab_id in WorkbenchTab.objects.filter(
            task_id=task_id, state__in=OPEN_STATES
        ).values_list("pk", flat=True):
            tab_close(tab_id=tab_id)
        for sandbox_id in sandboxes_to_destroy(task_id=task_id):
            if sandbox_services.sandbox_begin_destroy(sandbox_id=sandbox_id):
                workflows.dispatch_after_commit(
                    workflows.start_sandbox_destroy, sandbox_id=sandbox_id
                )
    return Task.objects.get(pk=task_id)
