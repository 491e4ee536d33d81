"""Benchmark-only views (served by bench.urls, never by config.urls)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from django.conf import settings
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from workbench import selectors, services
from workbench.serializers import TabOutputSerializer

if TYPE_CHECKING:
    from rest_framework.request import Request

# How long an inline request waits for another request's provisioning run of its task.
INLINE_WAIT_SECONDS = 120.0


class NoopView(APIView):
    """The floor: Daphne, Django's middleware, DRF, token authentication and JSON rendering,
    with no work of our own (one query: the token lookup)."""

    def get(self, request: Request) -> Response:
        return Response({"ok": True})


class InlineTabCreateView(APIView):
    """Tab creation as it was before this design: provision and open the session inside the
    request, and answer with the ready tab.

    Calls the same services the Celery chain calls (tab_create, then tab_provision, which
    runs tasks_app.services.task_provision, then tab_open_session), so only *where* the work
    runs differs. tab_create still dispatches its chain after commit; the benchmark runs this
    variant with no worker consuming, and purges those messages afterwards.
    """

    def post(self, request: Request, task_id: int) -> Response:
        task = selectors.task_get_for_user(task_id=task_id, user=request.user)
        tab, _ = services.tab_create(user=request.user, task=task)
        owner = f"inline-{tab.pk.hex}"
        deadline = time.monotonic() + INLINE_WAIT_SECONDS
        outcome = services.tab_provision(tab_id=tab.pk, attempt=tab.attempt, owner=owner)
        # Another request is provisioning this task: wait for it, polling as the chain does.
        while outcome == "wait" and time.monotonic() < deadline:
            time.sleep(settings.WORKBENCH_PROVISION_POLL_SECONDS)
            outcome = services.tab_provision(tab_id=tab.pk, attempt=tab.attempt, owner=owner)
        if outcome == "continue":
            services.tab_open_session(tab_id=tab.pk, attempt=tab.attempt)
        tab = selectors.tab_get_for_user(tab_id=tab.pk, user=request.user)
        return Response(TabOutputSerializer(tab).data, status=status.HTTP_201_CREATED)
