"""Small helpers shared by the test suites."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import httpx

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str | Callable[[], str] = "condition not met",
    *,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll `predicate` until it returns something truthy, and return that value.

    Raises AssertionError carrying `message` (a string, or a callable evaluated at timeout so
    it can describe the last observed state) once `timeout` seconds have passed. Exceptions
    listed in `ignore` count as "not yet"; any other exception propagates at once.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = predicate()
        except ignore as exc:
            last_error = exc
        else:
            if result:
                return result
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            if last_error is not None:
                text = f"{text} (last error: {last_error!r})"
            raise AssertionError(f"timed out after {timeout:g}s: {text}")
        time.sleep(interval)


def open_tab(api: httpx.Client, task_id: int) -> dict:
    """POST a tab on a running service; the placeholder it answers with (201 asserted)."""
    response = api.post(f"/api/tasks/{task_id}/tabs/", json={})
    assert response.status_code == 201, response.text
    return response.json()


def wait_for_running_step(name: str, timeout: float = 30.0) -> None:
    """Wait until some sandbox's provisioning step `name` is running."""
    from sandboxes.models import ProvisioningStep, StepOutcome

    wait_until(
        lambda: ProvisioningStep.objects.filter(name=name, outcome=StepOutcome.RUNNING).exists(),
        timeout=timeout,
        message=f"no {name} step started",
    )
