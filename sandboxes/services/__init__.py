"""Every write to sandboxes, by concern; the rest of the service calls these names.

transitions.py   the sandbox's state transitions, its workspace and provider handle
leases.py        the task's one live sandbox, the provisioning lease, the workspace's share
provisioning.py  a provisioning run: the provider's steps under the lease, recorded
operations.py    health, agent sessions, destroying and releasing, through the provider

Inside the package a module imports only from those above it in this list.
"""

from __future__ import annotations

from sandboxes.services.leases import (
    Claim,
    LeaseLost,
    sandbox_ensure,
    sandbox_lease,
    sandboxes_to_start,
)
from sandboxes.services.operations import (
    model_choices,
    sandbox_destroy,
    sandbox_healthy,
    sandbox_release_failed,
    sandbox_session_cancel,
    sandbox_session_close,
    sandbox_session_open,
    sandbox_session_prompt,
    sandbox_session_set_model,
)
from sandboxes.services.provisioning import sandbox_provision
from sandboxes.services.transitions import (
    handle_of,
    sandbox_begin_destroy,
    sandbox_fail,
    sandbox_mark_ready,
)

__all__ = [
    "Claim",
    "LeaseLost",
    "handle_of",
    "model_choices",
    "sandbox_begin_destroy",
    "sandbox_destroy",
    "sandbox_ensure",
    "sandbox_fail",
    "sandbox_healthy",
    "sandbox_lease",
    "sandbox_mark_ready",
    "sandbox_provision",
    "sandbox_release_failed",
    "sandbox_session_cancel",
    "sandbox_session_close",
    "sandbox_session_open",
    "sandbox_session_prompt",
    "sandbox_session_set_model",
    "sandboxes_to_start",
]
