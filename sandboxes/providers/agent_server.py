"""What every provider whose sandboxes run a sandbox-agent server shares: health checks,
agent install, sessions and prompts over its HTTP API. Subclasses make and destroy the
sandbox (a local process, a remote host) and may say when its server is certainly gone."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

from django.conf import settings

from sandboxes.agent_client import AgentServerClient
from sandboxes.providers.base import AgentModels, ProviderError, SandboxGone, SandboxHandle

if TYPE_CHECKING:
    from collections.abc import Callable

    from sandboxes.providers.base import PromptResult


class AgentServerProvider:
    name = "agent-server"

    def _alive(self, handle: SandboxHandle) -> bool:
        """False when the server is certainly gone without asking it (e.g. its pid exited)."""
        return True

    def _dead_reason(self, handle: SandboxHandle) -> str:
        return "the sandbox-agent server is gone"

    def _client(self, handle: SandboxHandle, timeout: float = 5.0) -> AgentServerClient:
        return AgentServerClient(handle.base_url, handle.token, timeout=timeout)

    def _require_alive(self, handle: SandboxHandle) -> None:
        if not self._alive(handle):
            raise SandboxGone(self._dead_reason(handle))

    def _wait_healthy(self, handle: SandboxHandle) -> None:
        """Poll the health endpoint with backoff until it answers or the deadline passes."""
        deadline = time.monotonic() + settings.WORKBENCH_HEALTH_TIMEOUT
        interval = 0.01
        with self._client(handle, timeout=2.0) as client:  # one client for every poll
            while time.monotonic() < deadline:
                if not self._alive(handle):
                    raise ProviderError(self._dead_reason(handle), code="server_exited")
                if client.health():
                    return
                time.sleep(interval)
                interval = min(interval * 2, 0.2)
        raise ProviderError(
            f"the sandbox-agent server at {handle.base_url} did not answer its health check "
            f"within {settings.WORKBENCH_HEALTH_TIMEOUT:.0f}s",
            code="health_timeout",
        )

    def _install_agent(self, handle: SandboxHandle, agent: str) -> None:
        timeout = settings.WORKBENCH_AGENT_INSTALL_TIMEOUT
        with self._client(handle, timeout) as client:
            client.install_agent(agent, timeout=timeout)

    def health(self, handle: SandboxHandle) -> bool:
        if not self._alive(handle):
            return False
        with self._client(handle, timeout=2.0) as client:
            return client.health()

    def create_session(self, handle: SandboxHandle, *, server_id: str, agent: str, cwd: str) -> str:
        self._require_alive(handle)
        timeout = settings.WORKBENCH_SESSION_TIMEOUT
        with self._client(handle, timeout) as client:
            return client.open_session(server_id=server_id, agent=agent, cwd=cwd, timeout=timeout)

    def agent_models(self, handle: SandboxHandle, *, agent: str) -> AgentModels:
        self._require_alive(handle)
        with self._client(handle, timeout=5.0) as client:
            options, default = client.agent_models(agent)
        return AgentModels(options=tuple(options), default=default)

    def set_model(
        self, handle: SandboxHandle, *, server_id: str, session_id: str, model: str
    ) -> None:
        self._require_alive(handle)
        timeout = settings.WORKBENCH_SESSION_TIMEOUT
        with self._client(handle, timeout) as client:
            client.set_model(
                server_id=server_id, session_id=session_id, model=model, timeout=timeout
            )

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
        self._require_alive(handle)
        timeout = settings.WORKBENCH_PROMPT_TIMEOUT
        with self._client(handle, timeout) as client:
            return client.prompt(
                server_id=server_id,
                session_id=session_id,
                text=text,
                last_event_id=last_event_id,
                on_text=on_text,
                timeout=timeout,
            )

    def cancel(self, handle: SandboxHandle, *, server_id: str, session_id: str) -> None:
        with self._client(handle) as client:
            client.cancel(server_id=server_id, session_id=session_id)

    def destroy_session(self, handle: SandboxHandle, *, server_id: str) -> None:
        with contextlib.suppress(SandboxGone), self._client(handle) as client:
            client.close_server(server_id)
