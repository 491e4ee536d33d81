"""A tab's model: chosen by a member in any open state, and given to its agent session.

The choices are what the task's sandbox-agent server reports for the agent (recorded on
the sandbox when it became ready, `Sandbox.agent_models`). Before a sandbox is ready the
choices are not known: a model is kept as chosen and checked when the session is made.

- pending: kept; the session step opens the session with it (sessions.tab_open_session).
- error: kept, and the tab is retried with it.
- ready: given to the live session at once; when the agent refuses, nothing changes and
  the answer says why (409 `model_not_applied`).
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

from django.db.models import F
from django.utils.timezone import now

from core.errors import Conflict, InvalidInput
from core.locks import workspace_transaction
from sandboxes import services as sandbox_services
from sandboxes.models import Sandbox, SandboxState
from sandboxes.providers.base import ProviderError, SandboxGone
from sandboxes.selectors import sandbox_live_for_task
from workbench.models import PENDING_STATES, TabState, WorkbenchTab
from workbench.services.runs import sandbox_lost
from workbench.services.tabs import tab_closed, tab_retry, tab_update
from workbench.services.transitions import record_tab

if TYPE_CHECKING:
    from uuid import UUID

    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)


def tab_set_model(*, tab_id: UUID, model: str) -> WorkbenchTab:
    """Choose the tab's model ("" for the agent's default)."""
    tab = WorkbenchTab.objects.select_related("sandbox").get(pk=tab_id)
    if tab.state == TabState.CLOSED:
        raise tab_closed()
    sandbox = _ready_sandbox(tab)
    choices = sandbox_services.model_choices(sandbox) if sandbox is not None else []
    if model and choices and model not in choices:
        raise InvalidInput(
            f"the agent {tab.agent} offers no model {model!r} here",
            code="unknown_model",
            fields={"model": [f"choose one of: {', '.join(choices)}"]},
        )
    if tab.state == TabState.READY and sandbox is not None:
        _apply_to_session(tab, sandbox, model)
        return WorkbenchTab.objects.get(pk=tab_id)
    if not _keep(tab, model, states=[*PENDING_STATES, TabState.ERROR]):
        raise _changed()
    if tab.state == TabState.ERROR:
        return tab_retry(tab_id=tab_id)
    return WorkbenchTab.objects.get(pk=tab_id)


def tab_edit(
    *,
    tab_id: UUID,
    user: User,
    model: str | None = None,
    title: str | None = None,
    draft: str | None = None,
    unread: bool | None = None,
) -> WorkbenchTab:
    """A member's edit of a tab: its model first (a refusal leaves the rest unchanged
    too), then its title and the member's own draft and unread."""
    if model is not None:
        tab_set_model(tab_id=tab_id, model=model)
    if title is not None or draft is not None or unread is not None:
        tab_update(tab_id=tab_id, user=user, title=title, draft=draft, unread=unread)
    return WorkbenchTab.objects.get(pk=tab_id)


def tab_apply_chosen_model(*, tab_id: UUID) -> None:
    """Right after a tab became ready: a model chosen while its session was being made
    (the step opened it with the earlier choice) is given to the session now. A refusal
    leaves the session as it is, and the tab says which model it runs (`session_model`)."""
    tab = WorkbenchTab.objects.select_related("sandbox").filter(pk=tab_id).first()
    if tab is None or tab.state != TabState.READY or tab.model == tab.session_model:
        return
    sandbox = _ready_sandbox(tab)
    if sandbox is None:
        return
    try:
        _apply_to_session(tab, sandbox, tab.model)
    except Conflict as exc:  # refused, or a newer choice landed (and was applied) meanwhile
        logger.warning("tab %s: model %r not applied: %s", tab_id, tab.model, exc.message)


def _ready_sandbox(tab: WorkbenchTab) -> Sandbox | None:
    if tab.sandbox is not None and tab.sandbox.state == SandboxState.READY:
        return tab.sandbox
    sandbox = sandbox_live_for_task(task_id=tab.task_id)
    return sandbox if sandbox is not None and sandbox.state == SandboxState.READY else None


def _apply_to_session(
    tab: WorkbenchTab, sandbox: Sandbox, model: str, *, settle: bool = True
) -> None:
    """Give the live session `model` (the agent's default for ""), then record it, if the
    tab is still as read (a ready tab's changes must land in the order of their calls)."""
    target = model or sandbox.default_model
    if not target:
        raise Conflict(
            f"the agent {tab.agent} does not say which model is its default here; "
            "choose a model by name",
            code="model_not_applied",
        )
    if target != (tab.session_model or sandbox.default_model):
        try:
            # Outside the workspace lock: the agent may take a moment.
            sandbox_services.sandbox_session_set_model(
                sandbox=sandbox,
                server_id=tab.acp_server_id,
                session_id=tab.session_id,
                model=target,
            )
        except SandboxGone as exc:
            sandbox_lost(sandbox_id=sandbox.pk, message=exc.message)
            raise Conflict(
                "the tab's sandbox is gone; retry the tab to re-provision it",
                code="sandbox_lost",
            ) from exc
        except ProviderError as exc:
            raise Conflict(
                f"the agent {tab.agent} did not take model {target!r}: {exc.message}",
                code="model_not_applied",
            ) from exc
    if not _keep(tab, model, states=[TabState.READY], at_version=True, session_model=target):
        # Another change landed first, and its own call to the agent may have come before
        # or after this one: give the session the choice that won, once.
        current = WorkbenchTab.objects.get(pk=tab.pk)
        if settle and current.state == TabState.READY and current.model != target:
            with contextlib.suppress(Conflict):
                _apply_to_session(current, sandbox, current.model, settle=False)
        raise _changed()


def _changed() -> Conflict:
    return Conflict("the tab changed meanwhile; reload it", code="conflict")


def _keep(
    tab: WorkbenchTab, model: str, *, states: list[str], at_version: bool = False, **fields: str
) -> bool:
    """Record the choice on a tab still in one of `states` (and, `at_version`, unchanged
    since it was read: a change that landed meanwhile wins); a tab.updated for everyone."""
    rows = WorkbenchTab.objects.filter(pk=tab.pk, state__in=states)
    if at_version:
        rows = rows.filter(version=tab.version)
    with workspace_transaction(tab.workspace_id):
        updated = rows.update(model=model, updated_at=now(), version=F("version") + 1, **fields)
        if updated:
            record_tab(WorkbenchTab.objects.get(pk=tab.pk))
    return bool(updated)
