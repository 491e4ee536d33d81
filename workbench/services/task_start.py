"""Starting work in one request: a task, its first tab and the prompt that tab will send."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.locks import workspace_transaction
from tasks_app import services as task_services
from workbench.services import messages
from workbench.services.tabs import tab_create

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from tasks_app.models import Task
    from workbench.models import Message, WorkbenchTab


@dataclass(frozen=True)
class Started:
    task: Task
    tab: WorkbenchTab
    message: Message


def task_start(*, workspace_id: int, user: User, prompt: str, **task_fields: str) -> Started:
    """Create the task, open its first tab and queue `prompt` there, all or nothing: a tab
    the member may not open (a quota) leaves no task behind. The tab is a placeholder like
    any other; the prompt goes out once its session is ready."""
    with workspace_transaction(workspace_id):
        task = task_services.task_create(workspace_id=workspace_id, user=user, **task_fields)
        tab, _ = tab_create(user=user, task=task)
        message = messages.message_send(tab_id=tab.pk, user=user, text=prompt)
    return Started(task=task, tab=tab, message=message)
