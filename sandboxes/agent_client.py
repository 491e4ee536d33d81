"""A small HTTP client for one sandbox-agent server (health, agent install, ACP over HTTP).

Shared by every provider whose sandboxes run a sandbox-agent server, local or remote.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import logging
import os
import socket
import stat
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import httpx
from httpx_sse import connect_sse

from sandboxes.providers.base import (
    PromptResult,
    ProviderError,
    ProviderUnavailable,
    SandboxGone,
)

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable, Iterator

ACP_PROTOCOL_VERSION = 1
# sandbox-agent's config option for the agent's model: its category, and its id (the same
# for every agent it knows, as of 0.4).
MODEL_CATEGORY = "model"
MODEL_CONFIG_ID = "model"
# A base URL `unix:/path/to.sock` means HTTP over that unix socket.
UNIX_PREFIX = "unix:"

logger = logging.getLogger(__name__)


def _chunk_text(envelope: dict, session_id: str) -> str:
    """The text of an ACP `session/update` agent_message_chunk for this session, else ''."""
    if envelope.get("method") != "session/update":
        return ""
    params = envelope.get("params") or {}
    if params.get("sessionId") not in (None, session_id):
        return ""
    update = params.get("update") or {}
    if update.get("sessionUpdate") != "agent_message_chunk":
        return ""
    content = update.get("content") or {}
    return content.get("text", "") if content.get("type", "text") == "text" else ""


def _result_text(result: dict) -> str:
    """An agent that streamed nothing still answered: show what its result says."""
    content = result.get("content")
    if isinstance(content, list):
        texts = [c.get("text", "") for c in content if isinstance(c, dict)]
        if any(texts):
            return "".join(texts)
    return json.dumps(result, ensure_ascii=False)


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


def _interrupt(response: httpx.Response) -> None:
    """End a stream another thread is blocked reading. Closing a socket does not wake a
    reader blocked on it (Linux): shut it down first, then close."""
    stream = response.extensions.get("network_stream")
    raw = stream.get_extra_info("socket") if stream is not None else None
    if raw is not None:
        with contextlib.suppress(OSError):
            raw.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(Exception):
        response.close()


def _request_id() -> str:
    """A JSON-RPC id unique across processes: the server routes each response by its id,
    so two workers talking to one ACP server (a duplicate delivery) must never share one."""
    return uuid.uuid4().hex


class _SandboxSocketTransport(httpx.BaseTransport):
    """HTTP over a sandbox's unix socket, without trusting what sits at its path.

    The socket's directory is writable from inside the sandbox, which could put a symlink
    there to aim the service at any other socket (another sandbox's, Docker's). So the
    final component is opened without following links and must be a socket, and the
    connections go through that descriptor (/proc/self/fd/N): nothing can be swapped in
    between. Opened at the first request: the socket may not exist yet (health polls).
    """

    def __init__(self, path: str):
        self.path = path
        self._fd: int | None = None
        self._inner: httpx.HTTPTransport | None = None

    def _transport(self, request: httpx.Request) -> httpx.HTTPTransport:
        if self._inner is None:
            try:
                fd = os.open(self.path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError as exc:
                raise httpx.ConnectError(f"no socket: {exc.strerror}", request=request) from exc
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                os.close(fd)
                raise httpx.ConnectError("the socket was replaced", request=request)
            self._fd = fd
            # Plain HTTP over the socket, but httpx still builds a TLS context for every
            # transport unless given one: the process's shared one (tls_context).
            self._inner = httpx.HTTPTransport(uds=f"/proc/self/fd/{fd}", verify=tls_context())
        return self._inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._transport(request).handle_request(request)

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()
            self._inner = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context per process. httpx builds a new one, loading the whole CA bundle
    (~10 ms of CPU), for every Client; provisioning makes a client per health poll and per
    call, and that was a quarter of a provisioning worker's CPU (docs/benchmarks.md)."""
    return httpx.create_ssl_context()


class AgentServerClient:
    """Talks to one sandbox-agent server with its bearer token."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 10.0):
        self.base_url = base_url.rstrip("/")
        transport: httpx.BaseTransport | None = None
        url = self.base_url
        if url.startswith(UNIX_PREFIX):
            # A confined local sandbox: its server is reachable only through a unix socket.
            transport = _SandboxSocketTransport(url.removeprefix(UNIX_PREFIX))
            url = "http://sandbox"
        self._client = httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            verify=tls_context(),
            transport=transport,
        )

    def __enter__(self) -> AgentServerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.close()

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """httpx's errors as the provider's: refused is gone, anything else is transient."""
        try:
            yield
        except httpx.ConnectError as exc:
            raise SandboxGone(
                f"sandbox-agent server at {self.base_url} refused the connection"
            ) from exc
        except httpx.TimeoutException as exc:
            raise ProviderUnavailable(f"sandbox-agent server at {self.base_url} timed out") from exc
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"sandbox-agent server at {self.base_url}: {exc}") from exc

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        started = time.monotonic()
        with self._errors():
            response = self._client.request(method, path, **kwargs)
        # Debug: one line per sandbox-agent call (health polls included), with the ids.
        logger.debug(
            "sandbox-agent %s %s: %s in %.0f ms",
            method,
            path,
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        return response

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
        envelope = {"jsonrpc": "2.0", "id": _request_id(), "method": method, "params": params}
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

    def agent_models(self, agent: str) -> tuple[list[tuple[str, str]], str]:
        """The agent's model choices as the server reports them ((value, name) pairs) and
        its default: the `model` category of `GET /v1/agents/{agent}?config=true`."""
        response = self._request("GET", f"/v1/agents/{agent}", params={"config": "true"})
        if response.status_code >= 400:
            raise ProviderError(
                f"listing agent {agent!r}'s models failed: {_problem(response)}",
                code="agent_config_failed",
            )
        body = response.json()
        options = body.get("configOptions") if isinstance(body, dict) else None
        for option in options if isinstance(options, list) else []:
            if isinstance(option, dict) and option.get("category") == MODEL_CATEGORY:
                choices = [
                    (str(choice["value"]), str(choice.get("name") or choice["value"]))
                    for choice in option.get("options") or []
                    if isinstance(choice, dict) and "value" in choice
                ]
                return choices, str(option.get("currentValue") or "")
        return [], ""

    def set_model(self, *, server_id: str, session_id: str, model: str, timeout: float) -> None:
        """ACP `session/set_config_option` on the model option (what sandbox-agent's own SDK
        sends for setModel); the agent's JSON-RPC error, if any, is the reason it refused."""
        self.acp_call(
            server_id,
            "session/set_config_option",
            {"sessionId": session_id, "configId": MODEL_CONFIG_ID, "value": model},
            timeout=timeout,
        )

    @contextlib.contextmanager
    def _feed(self, server_id: str, headers: dict[str, str], timeout: float) -> Iterator[Any]:
        """The server's SSE feed of one ACP server, with connection errors as ours (errors
        while reading it are the caller's: the POST's answer ends the turn)."""
        with contextlib.ExitStack() as stack:
            with self._errors():
                source = stack.enter_context(
                    connect_sse(
                        self._client,
                        "GET",
                        f"/v1/acp/{server_id}",
                        headers=headers,
                        timeout=httpx.Timeout(timeout, read=timeout),
                    )
                )
            yield source

    def prompt(
        self,
        *,
        server_id: str,
        session_id: str,
        text: str,
        last_event_id: str,
        on_text: Callable[[str], None],
        timeout: float,
    ) -> PromptResult:
        """Send `session/prompt` and stream the reply from the server's SSE feed.

        The SSE feed replays history, so it is read from `last_event_id` (the cursor kept
        from the previous turn); `on_text` gets the accumulated text as chunks arrive, on the
        caller's thread (it writes rows: their connection is the caller's). The feed is open
        before the prompt is posted, from a helper thread, so no chunk is missed; the feed
        ends with the turn's own response on it, or shortly after the POST answers.
        """
        request_id = _request_id()
        chunks: list[str] = []
        cursor = last_event_id
        answered: dict[str, httpx.Response | BaseException] = {}
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        envelope = {
            "jsonrpc": "2.0",
            "id": request_id,
            "method": "session/prompt",
            "params": {"sessionId": session_id, "prompt": [{"type": "text", "text": text}]},
        }
        with self._feed(server_id, headers, timeout) as feed:
            turn_seen = threading.Event()

            def post() -> None:
                try:
                    answered["response"] = self._request(
                        "POST", f"/v1/acp/{server_id}", json=envelope, timeout=timeout
                    )
                except BaseException as exc:  # re-raised on the caller's thread
                    answered["error"] = exc
                # Chunks precede the turn's response on the feed: a moment to catch up.
                if not turn_seen.wait(2.0):
                    _interrupt(feed.response)

            # In the caller's context: its log lines carry the tab's ids (core/logs.py).
            poster = threading.Thread(
                target=contextvars.copy_context().run,
                args=(post,),
                name=f"prompt-{server_id}",
                daemon=True,
            )
            poster.start()
            try:
                for event in feed.iter_sse():
                    cursor = event.id or cursor
                    message = json.loads(event.data) if event.data else {}
                    if not isinstance(message, dict):  # the sandbox writes this feed
                        continue
                    piece = _chunk_text(message, session_id)
                    if piece:
                        chunks.append(piece)
                        on_text("".join(chunks))
                    if message.get("id") == request_id and (
                        "result" in message or "error" in message
                    ):
                        turn_seen.set()
                        break
            except (httpx.HTTPError, httpx.StreamError, ValueError, OSError):
                pass  # the feed was closed (or broke): the POST's own answer ends the turn
            finally:
                turn_seen.set()
            poster.join(timeout + 10)
        if "error" in answered:
            raise answered["error"]  # type: ignore[misc]
        response = answered.get("response")
        if not isinstance(response, httpx.Response):
            raise ProviderUnavailable(f"sandbox-agent server at {self.base_url} timed out")
        if response.status_code == 404:
            raise ProviderError("the agent session is gone from the sandbox", code="session_lost")
        if response.status_code >= 400:
            raise ProviderError(
                f"ACP session/prompt failed: {_problem(response)}", code="acp_error"
            )
        body = response.json()
        if "error" in body:
            error = body["error"] or {}
            raise ProviderError(
                f"the agent refused the prompt: {error.get('message', error)}", code="acp_error"
            )
        result = body.get("result") or {}
        reply = "".join(chunks) or _result_text(result)
        return PromptResult(
            text=reply, stop_reason=str(result.get("stopReason", "")), last_event_id=cursor
        )

    def cancel(self, *, server_id: str, session_id: str) -> None:
        """Ask the agent to stop its running turn (an ACP notification); the session stays."""
        envelope = {
            "jsonrpc": "2.0",
            "method": "session/cancel",
            "params": {"sessionId": session_id},
        }
        response = self._request("POST", f"/v1/acp/{server_id}", json=envelope)
        if response.status_code >= 400 and response.status_code != 404:
            raise ProviderError(f"ACP session/cancel failed: {_problem(response)}")

    def run_process(self, command: str, args: list[str], *, timeout: float) -> dict:
        """Run a command to completion on the server's host (its process API)."""
        response = self._request(
            "POST",
            "/v1/processes/run",
            timeout=timeout + 10,
            json={"command": command, "args": args, "timeoutMs": int(timeout * 1000)},
        )
        if response.status_code >= 400:
            raise ProviderError(
                f"running {command} failed: {_problem(response)}", code="remote_command_failed"
            )
        return response.json()

    def close_server(self, server_id: str) -> None:
        """Close one ACP server (its agent process and sessions).

        sandbox-agent 0.4 removes the server at once but may never answer the DELETE (seen
        for a server made moments before: no answer within 60 s). Waiting for that answer
        held a session worker for the whole client timeout, so closing a few pending tabs
        stalled every other tenant's session creation by ~5 s: wait briefly, then ask
        whether the server is gone.
        """
        try:
            response = self._request(
                "DELETE", f"/v1/acp/{server_id}", timeout=httpx.Timeout(5.0, read=0.5)
            )
        except ProviderUnavailable:
            if server_id in self.list_servers():
                raise
            return
        if response.status_code not in (200, 202, 204, 404):
            raise ProviderError(f"closing ACP server {server_id} failed: {_problem(response)}")

    def list_servers(self) -> list[str]:
        response = self._request("GET", "/v1/acp")
        return [server["serverId"] for server in response.json().get("servers", [])]
