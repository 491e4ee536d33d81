"""Benchmark-only views (served by bench.urls, never by config.urls)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from sandboxes.selectors import sandbox_live_for_task
from tasks_app import selectors as task_selectors
from workbench import selectors, services
from workbench.serializers import TabOutputSerializer

if TYPE_CHECKING:
    from rest_framework.request import Request

# How long an inline request waits for another request's provisioning run of its task.
INLINE_WAIT_SECONDS = 120.0
INLINE_POLL_SECONDS = 0.25


class NoopView(APIView):
    """The floor: Daphne, Django's middleware, DRF, token authentication and JSON rendering,
    with no work of our own (one query: the token lookup)."""

    def get(self, request: Request) -> Response:
        return Response({"ok": True})


class InlineTabCreateView(APIView):
    """Tab creation as it was before this design: provision and open the session inside the
    request, and answer with the ready tab.

    Calls the same services the workers call (tab_create, then sandbox_run, which runs
    tasks_app.services.task_provision_run, then tab_open_session), so only *where* the work
    runs differs. tab_create still dispatches its run after commit; the benchmark runs this
    variant with no worker consuming, and purges those messages afterwards.
    """

    def post(self, request: Request, task_id: int) -> Response:
        task = task_selectors.task_get_for_user(task_id=task_id, user=request.user)
        tab, _ = services.tab_create(user=request.user, task=task)
        owner = f"inline-{tab.pk.hex}"
        deadline = time.monotonic() + INLINE_WAIT_SECONDS
        sandbox = sandbox_live_for_task(task_id=task.pk)
        while sandbox is not None and time.monotonic() < deadline:
            outcome = services.sandbox_run(sandbox_id=sandbox.pk, owner=owner)
            if outcome.outcome not in ("busy", "queued"):
                break
            # Another request is provisioning this task: wait for its run to end.
            time.sleep(INLINE_POLL_SECONDS)
        services.tab_open_session(tab_id=tab.pk, attempt=tab.attempt)
        tab = selectors.tab_get_for_user(tab_id=tab.pk, user=request.user)
        return Response(TabOutputSerializer(tab).data, status=status.HTTP_201_CREATED)
