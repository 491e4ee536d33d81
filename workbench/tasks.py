"""Celery entry points: ids in, one service call, the retry policy. No business rules."""

from __future__ import annotations

from uuid import UUID

from celery import shared_task

from sandboxes.providers.base import ProviderUnavailable


@shared_task(bind=True, acks_late=True, max_retries=None)
def provision_sandbox(self, sandbox_id: int) -> str:
    """The task's provisioning run: make the sandbox ready, then hand off to its tabs."""
    from workbench import services

    owner = self.request.id or f"local-{sandbox_id}"
    result = services.sandbox_run(sandbox_id=sandbox_id, owner=owner)
    if result.retry_in is not None:
        # A live run holds the lease (this is a duplicate, or a redelivery that came back
        # before a killed run's lease lapsed): one look again when it could have lapsed.
        raise self.retry(countdown=result.retry_in)
    return result.outcome


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
    """Open the tab's own agent session (started by its task's provisioning run, or at
    once when the sandbox was ready)."""
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
    from workbench.services import messages

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
    from core import services as core_services

    return core_services.events_prune()
