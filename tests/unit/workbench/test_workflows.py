"""workflows sends its Celery messages by task name (it cannot import workbench.tasks, which
imports the services that call it): each name must be a registered task, routed to its
queue, with arguments its signature takes."""

from __future__ import annotations

import inspect
import uuid
from unittest import mock

import pytest
from django.conf import settings

from config.celery import app
from workbench import workflows

TAB = uuid.uuid4()
STARTS = [
    (workflows.start_sandbox_run, {"sandbox_id": 7}),
    (workflows.start_session_open, {"tab_id": TAB, "attempt": 2}),
    (workflows.start_session_teardown, {"tab_id": TAB}),
    (workflows.start_sandbox_destroy, {"sandbox_id": 7}),
    (workflows.start_message_delivery, {"tab_id": TAB}),
    (workflows.start_sandbox_release, {"sandbox_id": 7}),
]


@pytest.mark.parametrize(("start", "kwargs"), STARTS, ids=lambda s: getattr(s, "__name__", ""))
def test_each_start_sends_a_registered_task_with_arguments_it_takes(start, kwargs) -> None:
    with mock.patch.object(app, "send_task") as send:
        start(**kwargs)
    (name,), options = send.call_args
    app.loader.import_default_modules()  # what a worker does at start: finds workbench.tasks
    task = app.tasks[name]  # NotRegistered: no worker would run it
    inspect.signature(task.run).bind(*options["args"])  # TypeError: arguments it cannot take
    assert options["ignore_result"] is True
    assert name in settings.CELERY_TASK_ROUTES, f"{name} would go to the default queue"
