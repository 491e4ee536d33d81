"""The one place that builds and sends the background work for tabs and sandboxes.

Called after commit by services; it only publishes messages, it never writes rows.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from celery import chain
from django.db import transaction

if TYPE_CHECKING:
    from collections.abc import Callable
    from uuid import UUID

logger = logging.getLogger(__name__)


def dispatch_after_commit(start: Callable[..., None], **kwargs: Any) -> None:
    """Run `start(**kwargs)` once the current transaction commits, never on rollback.

    Publish after commit: a worker could otherwise read a row that does not exist yet.
    A publish that fails is logged and left to the reconciler (the row is the truth).
    """

    def dispatch() -> None:
        try:
            start(**kwargs)
        except Exception:
            logger.exception(
                "dispatching %s%s failed; the reconciler will re-drive it",
                getattr(start, "__name__", start),
                kwargs,
            )

    transaction.on_commit(dispatch)


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


def start_sandbox_release(*, sandbox_id: int) -> None:
    from workbench import tasks

    tasks.release_sandbox.delay(sandbox_id)
