"""A tab's agent session: opened by its step (chain step 2), torn down once it closes."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

from django.conf import settings
from django.db.models import F
from django.utils.timezone import now

from core import logs
from sandboxes import services as sandbox_services
from sandboxes.models import SandboxState
from sandboxes.providers.base import ProviderError, ProviderUnavailable, SandboxGone
from sandboxes.selectors import sandbox_live_for_task
from workbench import workflows
from workbench.models import (
    PENDING_STATES,
    TabErrorCode,
    TabState,
    WorkbenchTab,
)
from workbench.selectors import tab_has_prompts_waiting
from workbench.services.agent_models import tab_apply_chosen_model
from workbench.services.runs import sandbox_lost
from workbench.services.transitions import tab_fail, tab_mark_ready, tab_mark_session_pending

if TYPE_CHECKING:
    from uuid import UUID


logger = logging.getLogger(__name__)


def tab_open_session(*, tab_id: UUID, attempt: int) -> None:
    """Chain step 2: give the tab its own agent session in the task's ready sandbox.

    The ACP server id is deterministic per tab and attempt, so a redelivered step reopens
    the same server rather than making a second one.
    """
    tab = WorkbenchTab.objects.filter(pk=tab_id, attempt=attempt).first()
    if tab is None or tab.state not in PENDING_STATES:
        return
    logs.bind(workspace=tab.workspace_id, task=tab.task_id, sandbox=tab.sandbox_id, tab=tab.pk)
    if tab.state == TabState.PENDING_PROVISION:
        sandbox = sandbox_live_for_task(task_id=tab.task_id)
        if sandbox is None or sandbox.state != SandboxState.READY:
            return  # provisioning failed (the tab is in error) or was lost: reconciler's job
        tab = tab_mark_session_pending(tab_id=tab_id, attempt=attempt, sandbox_id=sandbox.pk)
        if tab is None:
            return
        logs.bind(sandbox=sandbox.pk)
    sandbox = tab.sandbox
    if sandbox is None or sandbox.state != SandboxState.READY:
        tab_fail(
            tab_id=tab_id,
            attempt=attempt,
            code=TabErrorCode.SANDBOX_LOST,
            message="The task's sandbox is no longer running; retry to re-provision it.",
        )
        return
    server_id = f"tab-{tab.pk.hex}-{attempt}"
    if tab.acp_server_id and tab.acp_server_id != server_id:
        # An earlier attempt's session (its step died, or it failed after making one):
        # nothing else records it once this attempt's id replaces it.
        try:
            sandbox_services.sandbox_session_close(sandbox=sandbox, server_id=tab.acp_server_id)
        except ProviderError as exc:  # best effort: it must not block the new session
            logger.warning("closing %s's old session failed: %s", tab.pk, exc.message)
    # The intent is recorded before the call: a step that dies after making the session
    # leaves a row that says which server to tear down (at close, or by the reconciler).
    starts = WorkbenchTab.objects.filter(pk=tab_id, attempt=attempt, state__in=PENDING_STATES)
    if not starts.update(session_starts=F("session_starts") + 1, acp_server_id=server_id):
        return  # closed or retried meanwhile
    if tab.session_starts + 1 > settings.WORKBENCH_MAX_SESSION_STARTS:
        tab_fail(
            tab_id=tab_id,
            attempt=attempt,
            code=TabErrorCode.STALLED,
            message=f"Starting the session was interrupted {tab.session_starts} times; "
            "retry to try again.",
        )
        return
    model = tab.model
    if model and (choices := sandbox_services.model_choices(sandbox)) and model not in choices:
        tab_fail(
            tab_id=tab_id,
            attempt=attempt,
            code=TabErrorCode.SESSION_FAILED,
            message=f"The agent {tab.agent} offers no model {model!r} here; choose one of "
            f"{', '.join(choices)} and retry.",
        )
        return
    try:
        session_id = sandbox_services.sandbox_session_open(
            sandbox=sandbox, server_id=server_id, agent=tab.agent, model=model
        )
    except SandboxGone as exc:
        sandbox_lost(sandbox_id=sandbox.pk, message=exc.message)
        return
    except ProviderUnavailable:
        raise  # transient: the Celery task retries with backoff
    except ProviderError as exc:
        tab_fail(
            tab_id=tab_id,
            attempt=attempt,
            code=TabErrorCode.SESSION_FAILED,
            message=f"Starting the agent session failed: {exc.message}",
        )
        return
    if tab_mark_ready(
        tab_id=tab_id,
        attempt=attempt,
        session_id=session_id,
        server_id=server_id,
        session_model=model,
    ):
        # A model chosen while the session was being made applies now it is ready.
        tab_apply_chosen_model(tab_id=tab_id)
        # Prompts sent while the tab was pending, or before an error and its retry, go out
        # now that a session exists. Only
        # then: a delivery takes the workspace lock, and a prompt sent from now on (the tab
        # is ready) dispatches its own.
        if tab_has_prompts_waiting(tab_id=tab_id):
            workflows.start_message_delivery(tab_id=tab_id)
        return
    current = WorkbenchTab.objects.filter(pk=tab_id).first()
    if (
        current is not None
        and current.state == TabState.READY
        and current.acp_server_id == server_id
    ):
        return  # a duplicate delivery of this same step won; the session is the tab's
    # Closed (or retried) while the session was being created: tear the late session down.
    sandbox_services.sandbox_session_close(sandbox=sandbox, server_id=server_id)


def tab_session_teardown(*, tab_id: UUID) -> None:
    """Close the agent session of a closed tab, and note that it is gone."""
    tab = (
        WorkbenchTab.objects.select_related("sandbox")
        .filter(pk=tab_id, state=TabState.CLOSED, session_closed_at__isnull=True)
        .first()
    )
    if tab is None or not tab.acp_server_id:
        return
    logs.bind(workspace=tab.workspace_id, task=tab.task_id, sandbox=tab.sandbox_id, tab=tab.pk)
    # A sandbox that is gone or going takes its sessions with it.
    if tab.sandbox is not None and tab.sandbox.state == SandboxState.READY:
        with contextlib.suppress(SandboxGone):
            sandbox_services.sandbox_session_close(sandbox=tab.sandbox, server_id=tab.acp_server_id)
    # Bookkeeping of a closed tab, not a change users see: no version, no event.
    WorkbenchTab.objects.filter(pk=tab_id).update(session_closed_at=now())
