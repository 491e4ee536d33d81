"""The one place that builds and sends the background work for tabs and sandboxes.

Called after commit by services; it only publishes messages, it never writes rows.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from celery import chain

if TYPE_CHECKING:
    from uuid import UUID

logger = logging.getLogger(__name__)


def start_tab_chain(*, tab_id: UUID, attempt: int, provision: bool) -> None:
    """provision the task's sandbox (if the tab waits for it) -> open the tab's session."""
    from workbench import tasks

    session = tasks.open_tab_session.si(str(tab_id), attempt)
    work = (
        chain(tasks.provision_for_tab.si(str(tab_id), attempt), session) if provision else session
    )
    work.apply_async()


def start_session_teardown(*, tab_id: UUID) -> None:
    from workbench import tasks

    tasks.close_tab_session.delay(str(tab_id))


def start_sandbox_destroy(*, sandbox_id: int) -> None:
    from workbench import tasks

    tasks.destroy_sandbox.delay(sandbox_id)


def start_message_delivery(*, tab_id: UUID) -> None:
    from workbench import tasks

    tasks.deliver_messages.delay(str(tab_id))
