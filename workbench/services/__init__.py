"""Every write of tabs and their transcripts, by entity. The names below are what the rest
of the service calls; the transcript's services are used as their module (`messages`).

transitions.py  the tab transition primitive and the workflow's transitions
tabs.py         what members do to tabs (open, edit, read, close, retry)
runs.py         the task's provisioning run, its hand-off, lost sandboxes, the health watch,
                an operator's discard and re-provision
agent_models.py a tab's model, chosen and given to its session
sessions.py     a tab's agent session, opened and torn down
messages.py     prompts and replies, one turn at a time
archive.py      archiving a task
task_start.py   a task, its first tab and its first prompt in one request

Inside the package a module imports only from those above it in this list, so it has no
cycle.
"""

from __future__ import annotations

from workbench.services import messages
from workbench.services.agent_models import tab_edit, tab_set_model
from workbench.services.archive import task_archive
from workbench.services.runs import (
    sandbox_discard,
    sandbox_lost,
    sandbox_run,
    sandboxes_watch,
    tab_redrive,
    task_reprovision,
)
from workbench.services.sessions import tab_open_session, tab_session_teardown
from workbench.services.tabs import (
    tab_close,
    tab_create,
    tab_mark_read,
    tab_mark_unread,
    tab_retry,
    tab_update,
)
from workbench.services.task_start import task_start
from workbench.services.transitions import tab_fail, tab_mark_ready

__all__ = [
    "messages",
    "sandbox_discard",
    "sandbox_lost",
    "sandbox_run",
    "sandboxes_watch",
    "tab_close",
    "tab_create",
    "tab_edit",
    "tab_fail",
    "tab_mark_read",
    "tab_mark_ready",
    "tab_mark_unread",
    "tab_open_session",
    "tab_redrive",
    "tab_retry",
    "tab_session_teardown",
    "tab_set_model",
    "tab_update",
    "task_archive",
    "task_reprovision",
    "task_start",
]
