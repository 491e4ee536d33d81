"""Celery entry points: ids in, one service call, the retry policy. No business rules."""

from __future__ import annotations

from uuid import UUID

from celery import shared_task
from django.conf import settings

from sandboxes.providers.base import ProviderUnavailable


@shared_task(bind=True, acks_late=True, max_retries=None)
def provision_for_tab(self, tab_id: str, attempt: int) -> None:
    """Chain step 1: make the task's sandbox ready, or wait for the run that is doing it."""
    from workbench import services

    owner = self.request.id or f"local-{tab_id}-{attempt}"
    outcome = services.tab_provision(tab_id=UUID(tab_id), attempt=attempt, owner=owner)
    if outcome == "wait":
        # Waiting is a re-queued message with a countdown, not a blocked worker slot.
        raise self.retry(countdown=settings.WORKBENCH_PROVISION_POLL_SECONDS)
    if outcome == "stop":
        self.request.chain = None  # nothing for the session step to do


@shared_task(
    bind=True,
    acks_late=True,
    autoretry_for=(ProviderUnavailable,),
    retry_backoff=1,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=5,
)
def open_tab_session(self, tab_id: str, attempt: int) -> None:
    """Chain step 2: open the tab's own agent session."""
    from workbench import services

    try:
        services.tab_open_session(tab_id=UUID(tab_id), attempt=attempt)
    except ProviderUnavailable as exc:
        if self.request.retries >= self.max_retries:
            services.tab_fail(
                tab_id=UUID(tab_id),
                attempt=attempt,
                code="session_failed",
                message=f"The sandbox did not answer: {exc.message}",
            )
            return
        raise


@shared_task(acks_late=True)
def deliver_messages(tab_id: str) -> int:
    """Deliver a tab's queued prompts one at a time, in order; returns how many ran."""
    from workbench import messages

    delivered = 0
    while messages.message_deliver_next(tab_id=UUID(tab_id)):
        delivered += 1
    return delivered


@shared_task(acks_late=True)
def close_tab_session(tab_id: str) -> None:
    from workbench import services

    services.tab_session_teardown(tab_id=UUID(tab_id))


@shared_task(acks_late=True)
def destroy_sandbox(sandbox_id: int) -> None:
    from sandboxes import services

    services.sandbox_destroy(sandbox_id=sandbox_id)


@shared_task(acks_late=True)
def release_sandbox(sandbox_id: int) -> None:
    """Free what a failed sandbox still holds (its row and error stay)."""
    from sandboxes import services

    services.sandbox_release_failed(sandbox_id=sandbox_id)


@shared_task
def reconcile() -> dict[str, int]:
    """Re-drive stalled pending tabs; fail them once they were re-driven too often."""
    from workbench import reconciler

    return reconciler.reconcile()


@shared_task
def prune_events() -> int:
    from workbench import services

    return services.events_prune()
