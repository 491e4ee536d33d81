"""The provider interface: every kind of sandbox (local process, remote host) implements it.

Providers do I/O only. They never touch the database: the services record steps, states and
events around the calls, so local and remote sandboxes give identical tab states.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractContextManager


@dataclass
class PromptResult:
    """What one agent turn produced: its text, and the SSE cursor after it."""

    text: str
    stop_reason: str
    last_event_id: str


@dataclass(frozen=True)
class AgentModels:
    """The models a sandbox's server offers for an agent (empty: it offers no choice), and
    the one a session gets unless told otherwise."""

    options: tuple[tuple[str, str], ...] = ()  # (value, human name)
    default: str = ""


class ProviderError(Exception):
    """A provider operation failed; `code` is machine-readable, the message is for people."""

    code = "provider_error"
    # The provisioning step it happened in, set by the step recorder (the tab's error names it).
    step = ""

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class ProviderUnavailable(ProviderError):
    """A transient failure (connection refused, timeout): retrying later may succeed."""

    code = "provider_unavailable"


class SandboxGone(ProviderError):
    """The sandbox's server is not there any more (process died, host gone)."""

    code = "sandbox_lost"


@dataclass(frozen=True)
class SandboxSpec:
    """What to provision: derived from the task, keyed deterministically by task and attempt."""

    key: str
    repository: str
    branch: str
    agent: str


@dataclass
class SandboxHandle:
    """How to reach a provisioned sandbox; stored on the Sandbox row."""

    base_url: str
    token: str
    workdir: str = ""
    pid: int | None = None


class StepLog(Protocol):
    """What a running step prints, a line at a time, for its live log. Only what a member may
    read: never a secret, never git's own error text (repositories' oracle, git.py)."""

    def __call__(self, line: str) -> None: ...


class StepRecorder(Protocol):
    """Called by a provider around each provisioning step, to record its timing and outcome;
    the step's body gets the step's log."""

    def __call__(self, name: str) -> AbstractContextManager[StepLog]: ...


class Provider(Protocol):
    name: str

    def plan(self, spec: SandboxSpec) -> list[str]:
        """The names of the steps `create` runs for `spec`, in order (shown before they
        start). No I/O."""
        ...

    def create(self, spec: SandboxSpec, *, step: StepRecorder) -> SandboxHandle:
        """Make the sandbox and start its server; idempotent for the same spec.key."""
        ...

    def health(self, handle: SandboxHandle) -> bool:
        """True when the sandbox's server answers its health check."""
        ...

    def create_session(self, handle: SandboxHandle, *, server_id: str, agent: str, cwd: str) -> str:
        """Start an agent session on the server under `server_id`; returns the session id."""
        ...

    def agent_models(self, handle: SandboxHandle, *, agent: str) -> AgentModels:
        """The models the sandbox's server offers for `agent`."""
        ...

    def set_model(
        self, handle: SandboxHandle, *, server_id: str, session_id: str, model: str
    ) -> None:
        """Give a live session another model; ProviderError (with the agent's reason) when
        the agent refuses."""
        ...

    def prompt(
        self,
        handle: SandboxHandle,
        *,
        server_id: str,
        session_id: str,
        text: str,
        last_event_id: str,
        on_text: Callable[[str], None],
    ) -> PromptResult:
        """Run one agent turn; `on_text` receives the reply so far as it streams."""
        ...

    def cancel(self, handle: SandboxHandle, *, server_id: str, session_id: str) -> None:
        """Stop the running turn, keeping the session."""
        ...

    def destroy_session(self, handle: SandboxHandle, *, server_id: str) -> None:
        """Tear a session down; no error if it is already gone."""
        ...

    def destroy(self, key: str, handle: SandboxHandle | None) -> None:
        """Stop the sandbox and free what it holds, including what an unfinished run under
        `key` left behind (handle None); no error if it is already gone."""
        ...
