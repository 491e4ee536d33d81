"""A small HTTP client for one sandbox-agent server (health, agent install, ACP over HTTP).

Shared by every provider whose sandboxes run a sandbox-agent server, local or remote.
"""

from __future__ import annotations

import itertools
from typing import Any

import httpx

from sandboxes.providers.base import ProviderError, ProviderUnavailable, SandboxGone

ACP_PROTOCOL_VERSION = 1
_request_ids = itertools.count(1)


def _problem(response: httpx.Response) -> str:
    """The server's RFC 7807 problem detail, or the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or f"HTTP {response.status_code}"
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("title") or ""
        stderr = (
            (body.get("details") or {}).get("stderr")
            if isinstance(body.get("details"), dict)
            else None
        )
        return f"{detail}: {stderr}" if stderr else str(detail or body)
    return str(body)[:300]


class AgentServerClient:
    """Talks to one sandbox-agent server with its bearer token."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    def __enter__(self) -> AgentServerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._client.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise SandboxGone(
                f"sandbox-agent server at {self.base_url} refused the connection"
            ) from exc
        except httpx.TimeoutException as exc:
            raise ProviderUnavailable(f"sandbox-agent server at {self.base_url} timed out") from exc
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"sandbox-agent server at {self.base_url}: {exc}") from exc

    def health(self) -> bool:
        try:
            response = self._request("GET", "/v1/health")
        except ProviderError:
            return False
        return response.status_code == 200 and response.json().get("status") == "ok"

    def install_agent(self, agent: str, *, timeout: float) -> dict:
        response = self._request("POST", f"/v1/agents/{agent}/install", json={}, timeout=timeout)
        if response.status_code >= 400:
            raise ProviderError(
                f"installing agent {agent!r} failed: {_problem(response)}",
                code="agent_install_failed",
            )
        return response.json()

    def acp_call(
        self,
        server_id: str,
        method: str,
        params: dict,
        *,
        agent: str | None = None,
        timeout: float | None = None,
    ) -> dict:
        """One JSON-RPC request over ACP's HTTP transport; returns its `result`."""
        envelope = {"jsonrpc": "2.0", "id": next(_request_ids), "method": method, "params": params}
        response = self._request(
            "POST",
            f"/v1/acp/{server_id}",
            params={"agent": agent} if agent else None,
            json=envelope,
            timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )
        if response.status_code >= 400:
            raise ProviderError(f"ACP {method} failed: {_problem(response)}", code="acp_error")
        body = response.json()
        if "error" in body:
            error = body["error"] or {}
            raise ProviderError(
                f"ACP {method} failed: {error.get('message', error)}", code="acp_error"
            )
        return body.get("result") or {}

    def open_session(self, *, server_id: str, agent: str, cwd: str, timeout: float) -> str:
        """initialize then session/new; returns the agent's session id.

        An agent that does not name its session (the offline mock agent echoes requests)
        gets the ACP server id, which is unique per tab and attempt.
        """
        self.acp_call(
            server_id,
            "initialize",
            {"protocolVersion": ACP_PROTOCOL_VERSION, "clientCapabilities": {}},
            agent=agent,
            timeout=timeout,
        )
        result = self.acp_call(
            server_id, "session/new", {"cwd": cwd, "mcpServers": []}, timeout=timeout
        )
        session_id = result.get("sessionId")
        return str(session_id) if session_id else server_id

    def close_server(self, server_id: str) -> None:
        response = self._request("DELETE", f"/v1/acp/{server_id}")
        if response.status_code not in (200, 202, 204, 404):
            raise ProviderError(f"closing ACP server {server_id} failed: {_problem(response)}")

    def list_servers(self) -> list[str]:
        response = self._request("GET", "/v1/acp")
        return [server["serverId"] for server in response.json().get("servers", [])]
