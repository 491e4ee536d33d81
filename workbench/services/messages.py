"""Services of the composer and transcript: sending a prompt, delivering it to the tab's
agent session one at a time and in order, and recording the (streamed) reply.

Each write records its event in the same transaction, like every other service.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db.models import F, Q
from django.utils.timezone import now

from core import logs
from core.errors import Conflict
from core.events import record_event
from core.locks import workspace_transaction
from core.transitions import transition
from sandboxes import services as sandbox_services
from sandboxes.models import SandboxState
from sandboxes.providers.base import ProviderError, ProviderUnavailable, SandboxGone
from workbench import presence, workflows
from workbench.models import (
    MESSAGE_TRANSITIONS,
    Message,
    MessageRole,
    MessageState,
    TabErrorCode,
    TabState,
    WorkbenchTab,
)
from workbench.serializers import message_payload
from workbench.services.runs import sandbox_lost
from workbench.services.tabs import tab_mark_unread
from workbench.services.transitions import record_tab, tab_fail

if TYPE_CHECKING:
    from datetime import datetime
    from uuid import UUID

    from django.contrib.auth.models import User

    from sandboxes.models import Sandbox

# How often a streaming reply is written (and broadcast) while chunks arrive.
STREAM_FLUSH_SECONDS = 0.1


def _record(message: Message, *, created: bool = False) -> None:
    record_event(
        message.workspace_id,
        "message.created" if created else "message.updated",
        message_payload(message),
    )


def _update(message_id: int, *, to: str | None = None, **fields: object) -> Message | None:
    """Move a message to `to` from a state MESSAGE_TRANSITIONS declares (a late `complete`
    never overwrites `failed`), or, without `to`, write a streaming reply's text so far.
    None, and no event, when the message had moved on."""
    workspace_id = Message.objects.values_list("workspace_id", flat=True).get(pk=message_id)
    with workspace_transaction(workspace_id):
        rows = Message.objects.filter(pk=message_id)
        if to is None:
            updated = rows.filter(state=MessageState.STREAMING).update(
                updated_at=now(), version=F("version") + 1, **fields
            )
        else:
            updated = transition(
                rows, table=MESSAGE_TRANSITIONS, to=to, sources=None, updated_at=now(), **fields
            )
        if not updated:
            return None
        message = Message.objects.get(pk=message_id)
        _record(message)
    return message


def message_send(*, tab_id: UUID, user: User | None, text: str) -> Message:
    """Queue a prompt on any open tab (202). A ready tab's delivery is dispatched after
    commit; a pending or error tab's prompts wait as rows and go out, in order, when its
    session step marks it ready (that step reads them after its own commit, and both take
    the workspace lock, so a prompt is never between the two)."""
    workspace_id = WorkbenchTab.objects.values_list("workspace_id", flat=True).get(pk=tab_id)
    with workspace_transaction(workspace_id):
        tab = WorkbenchTab.objects.select_for_update().get(pk=tab_id)
        if tab.state == TabState.CLOSED:
            raise Conflict("The tab is closed; open a new tab to send.", code="tab_closed")
        waiting = Message.objects.filter(
            tab=tab, role=MessageRole.USER, state=MessageState.QUEUED
        ).count()
        if waiting >= settings.WORKBENCH_MAX_QUEUED_PROMPTS:
            raise Conflict(
                f"This tab already has {waiting} prompts waiting (the limit); send more once "
                "they have been delivered.",
                code="too_many_queued",
            )
        message = Message.objects.create(
            tab=tab,
            workspace_id=tab.workspace_id,
            role=MessageRole.USER,
            author=user,
            text=text,
            state=MessageState.QUEUED,
        )
        _record(message, created=True)
        if tab.state == TabState.READY:
            workflows.dispatch_after_commit(workflows.start_message_delivery, tab_id=tab.pk)
    return message


@dataclass(frozen=True)
class _Turn:
    message: Message
    tab: WorkbenchTab
    sandbox: Sandbox


def _claim_next(tab_id: UUID) -> _Turn | None:
    """Take the tab's oldest queued prompt, unless another is being delivered (one turn at a
    time per tab). A `sending` prompt older than a turn may last was abandoned by a dead
    worker: it is taken again, and its half-written reply marked failed."""
    abandoned_before = now() - timedelta(seconds=settings.WORKBENCH_PROMPT_TIMEOUT + 60)
    workspace_id = WorkbenchTab.objects.filter(pk=tab_id).values_list("workspace_id", flat=True)
    if not workspace_id:
        return None
    with workspace_transaction(workspace_id[0]):
        tab = (
            WorkbenchTab.objects.select_for_update(of=("self",))
            .select_related("sandbox")
            .filter(pk=tab_id)
            .first()
        )
        if tab is None or tab.state != TabState.READY or tab.sandbox is None:
            return None
        logs.bind(workspace=tab.workspace_id, task=tab.task_id, sandbox=tab.sandbox_id, tab=tab.pk)
        mine = Message.objects.filter(tab=tab, role=MessageRole.USER)
        if mine.filter(state=MessageState.SENDING, updated_at__gte=abandoned_before).exists():
            return None
        message = mine.filter(state__in=[MessageState.QUEUED, MessageState.SENDING]).first()
        if message is None:
            return None
        for reply in message.replies.filter(state=MessageState.STREAMING):
            _update(reply.pk, to=MessageState.FAILED, error_message="Interrupted.")
        claimed = _update(message.pk, to=MessageState.SENDING)
        if claimed is None:
            return None
        _tab_running(tab.pk, since=claimed.updated_at)
    return _Turn(message=claimed, tab=tab, sandbox=tab.sandbox)


def _tab_running(tab_id: UUID, *, since: datetime | None, was: datetime | None = None) -> None:
    """Under the workspace lock: the tab's turn started at `since`, or (None) the turn that
    started at `was` ended. Only that turn's end clears it: a late end (the tab closed,
    failed or retried meanwhile, which cleared it already, or the turn was taken again)
    changes nothing and records no event."""
    rows = WorkbenchTab.objects.filter(pk=tab_id)
    if since is None:
        rows = rows.filter(running_since=was)
    if rows.update(running_since=since, updated_at=now(), version=F("version") + 1):
        record_tab(WorkbenchTab.objects.get(pk=tab_id))


def message_deliver_next(*, tab_id: UUID) -> bool:
    """Deliver the tab's next prompt and record the reply. True if a turn ran (there may be
    more queued); False if there was nothing to do or the tab can no longer take prompts."""
    turn = _claim_next(tab_id)
    if turn is None:
        return False
    message, tab, sandbox = turn.message, turn.tab, turn.sandbox
    with workspace_transaction(tab.workspace_id):
        reply = Message.objects.create(
            tab=tab,
            workspace_id=tab.workspace_id,
            role=MessageRole.AGENT,
            reply_to=message,
            state=MessageState.STREAMING,
        )
        _record(reply, created=True)
    last_flush = [0.0]

    def on_text(text: str) -> None:
        if time.monotonic() - last_flush[0] >= STREAM_FLUSH_SECONDS:
            last_flush[0] = time.monotonic()
            _update(reply.pk, text=text)

    try:
        result = sandbox_services.sandbox_session_prompt(
            sandbox=sandbox,
            server_id=tab.acp_server_id,
            session_id=tab.session_id,
            text=message.text,
            last_event_id=tab.acp_last_event_id,
            on_text=on_text,
        )
    except SandboxGone as exc:
        _fail_turn(message, reply, f"The sandbox stopped: {exc.message}")
        sandbox_lost(sandbox_id=sandbox.pk, message=exc.message)
        return False
    except ProviderUnavailable as exc:
        _fail_turn(message, reply, f"The agent did not answer: {exc.message}")
        return True
    except ProviderError as exc:
        _fail_turn(message, reply, exc.message)
        if exc.code == "session_lost":
            tab_fail(
                tab_id=tab.pk,
                attempt=tab.attempt,
                code=TabErrorCode.SESSION_FAILED,
                message=f"{exc.message}; retry to start a new session.",
            )
            return False
        return True
    viewing = presence.viewers(tab.pk)  # read before the lock: it is a Redis round trip
    with workspace_transaction(tab.workspace_id):
        _update(reply.pk, to=MessageState.COMPLETE, text=result.text)
        _update(message.pk, to=MessageState.COMPLETE)
        _tab_running(tab.pk, since=None, was=message.updated_at)
        WorkbenchTab.objects.filter(pk=tab.pk).update(acp_last_event_id=result.last_event_id)
        tab_mark_unread(tab_id=tab.pk, viewers=viewing)
    return True


def _fail_turn(message: Message, reply: Message, reason: str) -> None:
    with workspace_transaction(message.workspace_id):
        _update(reply.pk, to=MessageState.FAILED, error_message=reason[:2000])
        _update(message.pk, to=MessageState.FAILED, error_message=reason[:2000])
        # `message` is the prompt as claimed: its updated_at is when the turn started.
        _tab_running(message.tab_id, since=None, was=message.updated_at)


def message_cancel_turn(*, tab_id: UUID) -> Message:
    """Ask the agent to stop the running turn; the session and the transcript stay."""
    tab = WorkbenchTab.objects.select_related("sandbox").get(pk=tab_id)
    running = Message.objects.filter(
        tab=tab, role=MessageRole.USER, state=MessageState.SENDING
    ).first()
    if (
        running is None
        or tab.state != TabState.READY
        or tab.sandbox is None
        or tab.sandbox.state != SandboxState.READY
    ):
        raise Conflict("No agent turn is running in this tab.", code="no_running_turn")
    try:
        sandbox_services.sandbox_session_cancel(
            sandbox=tab.sandbox, server_id=tab.acp_server_id, session_id=tab.session_id
        )
    except ProviderError as exc:
        raise Conflict(
            f"The agent could not be reached: {exc.message}", code="cancel_failed"
        ) from exc
    return running


def tabs_with_undelivered_messages(*, before: datetime) -> list[UUID]:
    """Ready tabs with a prompt queued and unmoved since `before` (a lost dispatch or a dead
    worker), or one sent so long ago that its turn was abandoned."""
    cutoff = before
    abandoned = now() - timedelta(seconds=settings.WORKBENCH_PROMPT_TIMEOUT + 60)
    # A tab whose turn is running delivers its next prompt when that turn ends; one whose
    # delivery the reconciler re-sent since `before` waits for that copy.
    turn_running = Message.objects.filter(
        role=MessageRole.USER, state=MessageState.SENDING, updated_at__gte=abandoned
    ).values("tab_id")
    queued = (
        Message.objects.filter(
            role=MessageRole.USER,
            tab__state=TabState.READY,
            state=MessageState.QUEUED,
            updated_at__lt=cutoff,
            # Queued while the tab was pending: its ready step dispatched the delivery.
            tab__state_changed_at__lt=cutoff,
        )
        .filter(Q(tab__redriven_at__isnull=True) | Q(tab__redriven_at__lt=cutoff))
        .exclude(tab_id__in=turn_running)
        .values_list("tab_id", flat=True)
    )
    stuck = Message.objects.filter(
        role=MessageRole.USER,
        tab__state=TabState.READY,
        state=MessageState.SENDING,
        updated_at__lt=abandoned,
    ).values_list("tab_id", flat=True)
    return sorted(set(queued) | set(stuck))
