"""Reads of sandboxes."""

from __future__ import annotations

from sandboxes.models import LIVE_STATES, Sandbox


def sandbox_live_for_task(*, task_id: int) -> Sandbox | None:
    """The task's live (provisioning or ready) sandbox; there is at most one."""
    return Sandbox.objects.filter(task_id=task_id, state__in=LIVE_STATES).first()


def sandbox_current_for_task(*, task_id: int) -> Sandbox | None:
    """The live sandbox, else the latest attempt (so a failure stays visible)."""
    live = sandbox_live_for_task(task_id=task_id)
    if live is not None:
        return live
    return Sandbox.objects.filter(task_id=task_id).prefetch_related("steps").order_by("-id").first()
