"""System checks: say at startup (migrate, runserver, check) when sandboxes would run
unconfined, instead of only when the first one starts."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Warning, register

from sandboxes.providers import confinement


@register()
def sandbox_isolation(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if "local" not in settings.WORKBENCH_PROVIDERS:
        return []
    try:
        mode = confinement.mode()
    except confinement.IsolationUnavailable as exc:
        return [Warning(str(exc), hint=confinement.probe_problem(), id="sandboxes.W001")]
    if mode.confined:
        return []
    return [
        Warning(
            f"local sandboxes will run unconfined: {mode.reason}",
            hint="Install bubblewrap and socat (make setup does), or use a remote provider; "
            "docs/providers.md says what confinement isolates.",
            id="sandboxes.W001",
        )
    ]
