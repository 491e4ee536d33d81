"""The Celery app; configured from Django settings under the CELERY_ namespace."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import (
    before_task_publish,
    setup_logging,
    task_postrun,
    task_prerun,
    worker_ready,
    worker_shutdown,
)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("workbench")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_ready.connect
def _start_upkeep(**_: object) -> None:
    """Every worker takes part in the upkeep (reconciler, sandbox watch): workbench.upkeep."""
    from workbench import upkeep

    upkeep.start()


@worker_shutdown.connect
def _stop_upkeep(**_: object) -> None:
    """A warm shutdown lets the round in progress finish (up to upkeep.SHUTDOWN_WAIT_SECONDS)
    and releases its lease, so the other workers' upkeep does not wait for it to lapse."""
    from workbench import upkeep

    upkeep.stop()


@before_task_publish.connect
def _stamp_sent_at(headers: dict[str, object] | None = None, **_: object) -> None:
    """Each message says when it was published: the reconciler reads how far a queue has
    got from the oldest waiting one (workbench.queues); and which request (or task) sent
    it, so the worker's lines carry that id too (core/logs.py)."""
    from core import logs
    from workbench import queues

    if headers is not None:
        queues.stamp(headers)
        sender = logs.ids().get("request")
        if sender:
            headers[REQUEST_HEADER] = sender


REQUEST_HEADER = "workbench_request"


@setup_logging.connect
def _log_as_django_does(**_: object) -> None:
    """Connected, so Celery leaves logging alone: Django's LOGGING (configured when the app
    loads) already formats the worker's lines, with their ids."""


@task_prerun.connect
def _bind_log_ids(task_id: str = "", task: object = None, **_: object) -> None:
    """A task's lines carry its id and the request that sent it; the services add the
    task, sandbox and tab as they load them."""
    from core import logs

    request = getattr(task, "request", None)
    sender = getattr(request, REQUEST_HEADER, None) or (
        getattr(request, "headers", None) or {}
    ).get(REQUEST_HEADER)
    logs.start(celery_task=task_id, request=sender)


@task_postrun.connect
def _unbind_log_ids(**_: object) -> None:
    from core import logs

    logs.start()
