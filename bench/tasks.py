"""Benchmark-only Celery tasks (found by autodiscovery under bench.settings only)."""

from __future__ import annotations

import os

from celery import shared_task


@shared_task(name="bench.touch")
def touch(workspace_id: int, count: int = 1) -> None:
    """Record `count` events on the workspace, each in its own transaction: a writer in a
    worker process, racing the others to the channel layer (scenario ws_order)."""
    from django.db import transaction

    from core.events import record_event

    for n in range(count):
        with transaction.atomic():
            record_event(workspace_id, "workspace.updated", {"bench": os.getpid(), "n": n})
