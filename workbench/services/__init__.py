"""Every write of tabs and their transcripts, by entity; callers use this package's names.

transitions.py  the tab transition primitive and the workflow's transitions
tabs.py         what members do to tabs (open, edit, close, retry)
runs.py         the task's provisioning run, its hand-off, lost sandboxes, the health watch
sessions.py     a tab's agent session, opened and torn down
messages.py     prompts and replies, one turn at a time
archive.py      archiving a task

Imports inside the package run down that list (transitions is imported by all, nothing
imports archive), so it has no cycle.
"""

from __future__ import annotations

from workbench.services.archive import task_archive
from workbench.services.messages import (
    message_cancel_turn,
    message_deliver_next,
    message_send,
    tabs_with_undelivered_messages,
)
from workbench.services.runs import (
    RunOutcome,
    sandbox_lost,
    sandbox_run,
    sandboxes_start_queued,
    sandboxes_watch,
    tab_redrive,
)
from workbench.services.sessions import tab_open_session, tab_session_teardown
from workbench.services.tabs import tab_close, tab_create, tab_mark_unread, tab_retry, tab_update
from workbench.services.transitions import (
    tab_fail,
    tab_mark_ready,
    tab_mark_session_pending,
    tabs_fail_waiting,
)

__all__ = [
    "RunOutcome",
    "message_cancel_turn",
    "message_deliver_next",
    "message_send",
    "sandbox_lost",
    "sandbox_run",
    "sandboxes_start_queued",
    "sandboxes_watch",
    "tab_close",
    "tab_create",
    "tab_fail",
    "tab_mark_ready",
    "tab_mark_session_pending",
    "tab_mark_unread",
    "tab_open_session",
    "tab_redrive",
    "tab_retry",
    "tab_session_teardown",
    "tab_update",
    "tabs_fail_waiting",
    "tabs_with_undelivered_messages",
    "task_archive",
]
