"""The Celery app; configured from Django settings under the CELERY_ namespace."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import before_task_publish, worker_ready, worker_shutdown

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
    got from the oldest waiting one (workbench.queues)."""
    from workbench import queues

    if headers is not None:
        queues.stamp(headers)
