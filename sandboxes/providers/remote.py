"""The remote provider: sandboxes on sandbox-agent servers that already run elsewhere.

An allocator says which server a sandbox lives on (WORKBENCH_REMOTE_ALLOCATOR, default: the
static pool of WORKBENCH_REMOTE_SERVERS). The working copy is made on that host through the
server's process API, under WORKBENCH_REMOTE_WORKDIR_ROOT/<key>; sessions and prompts go
over the same HTTP API as local sandboxes, so tab states are identical.

Steps: connect, prepare_workspace, install_agent.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import posixpath
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from sandboxes.providers import git
from sandboxes.providers.agent_server import AgentServerProvider
from sandboxes.providers.base import (
    ProviderError,
    ProviderUnavailable,
    SandboxHandle,
    SandboxSpec,
    StepRecorder,
)


@dataclass(frozen=True)
class RemoteServer:
    url: str
    token: str


class Allocator(Protocol):
    """Chooses the server of a sandbox; the same key must always get the same server."""

    def allocate(self, key: str) -> RemoteServer: ...

    def release(self, key: str) -> None: ...


class StaticAllocator:
    """A fixed pool from WORKBENCH_REMOTE_SERVERS (JSON: [{"url": ..., "token": ...}]).

    The server is a hash of the key: deterministic (a redelivered step lands on the same
    host) and spread evenly, with no shared state to keep.
    """

    def __init__(self, servers: list[RemoteServer] | None = None):
        self.servers = servers if servers is not None else self._configured()
        if not self.servers:
            raise ImproperlyConfigured("the remote provider needs WORKBENCH_REMOTE_SERVERS")

    @staticmethod
    def _configured() -> list[RemoteServer]:
        try:
            entries = json.loads(settings.WORKBENCH_REMOTE_SERVERS or "[]")
            return [RemoteServer(url=e["url"].rstrip("/"), token=e["token"]) for e in entries]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ImproperlyConfigured(
                'WORKBENCH_REMOTE_SERVERS must be JSON like [{"url": "http://host:2468", '
                '"token": "..."}]'
            ) from exc

    def allocate(self, key: str) -> RemoteServer:
        digest = int(hashlib.sha256(key.encode()).hexdigest(), 16)
        return self.servers[digest % len(self.servers)]

    def release(self, key: str) -> None:
        """Nothing to free: the pool is static."""


def configured_allocator() -> Allocator:
    return import_string(settings.WORKBENCH_REMOTE_ALLOCATOR)()


class RemoteProvider(AgentServerProvider):
    name = "remote"

    def __init__(self, allocator: Allocator | None = None):
        self.allocator = allocator or configured_allocator()

    def _workdir(self, key: str) -> str:
        return posixpath.join(settings.WORKBENCH_REMOTE_WORKDIR_ROOT, key)

    def plan(self, spec: SandboxSpec) -> list[str]:
        return ["connect", "prepare_workspace", "install_agent"]

    def create(self, spec: SandboxSpec, *, step: StepRecorder) -> SandboxHandle:
        server = self.allocator.allocate(spec.key)
        handle = SandboxHandle(
            base_url=server.url, token=server.token, workdir=self._workdir(spec.key)
        )
        with step("connect") as log:
            log("Connecting to the remote sandbox host")
            try:
                self._wait_healthy(handle)
            except ProviderError as exc:
                raise ProviderError(
                    f"cannot reach the remote sandbox host: {exc.message}",
                    code="remote_unreachable",
                ) from exc
            log("Connected")
        with step("prepare_workspace") as log:
            if spec.repository:
                log(git.cloning_line(spec.repository, spec.branch))
            else:
                log(git.empty_line(spec.branch))
            self._prepare_workspace(spec, handle)
            log("Done")
        with step("install_agent") as log:
            log(f"Installing the {spec.agent} agent")
            self._install_agent(handle, spec.agent)
            log("Installed")
        return handle

    def _prepare_workspace(self, spec: SandboxSpec, handle: SandboxHandle) -> None:
        """Replace whatever a crashed run left, then clone (or init) on the remote host."""
        repository = git.admitted(spec.repository)  # again: the row may predate the policy
        workdir = handle.workdir
        home = f"{workdir}.home"  # git's own HOME: none of the host user's config or keys
        timeout = settings.WORKBENCH_CLONE_TIMEOUT
        self._run(handle, "rm", ["-rf", "--", workdir, home], timeout=60)
        self._run(handle, "mkdir", ["-p", "--", home], timeout=60)
        env = [f"{name}={value}" for name, value in git.git_env(repository, home=home).items()]
        if repository is not None:
            args = git.clone_args(repository, spec.branch, workdir)
            result = self._call(handle, "env", ["-i", *env, "git", *args], timeout=timeout)
            if result.get("timedOut"):
                raise ProviderError(f"git timed out after {timeout:.0f}s", code="clone_timeout")
            if result.get("exitCode") != 0:
                stderr = result.get("stderr") or result.get("stdout") or ""
                raise git.clone_failed(stderr, branch=spec.branch, key=spec.key)
        else:
            self._run(
                handle,
                "env",
                ["-i", *env, "git", "init", "--quiet", "-b", spec.branch or "main", workdir],
                timeout=timeout,
                code="clone_failed",
            )

    def _call(
        self, handle: SandboxHandle, command: str, args: list[str], *, timeout: float
    ) -> dict:
        with self._client(handle, timeout=timeout + 10) as client:
            return client.run_process(command, args, timeout=timeout)

    def _run(
        self,
        handle: SandboxHandle,
        command: str,
        args: list[str],
        *,
        timeout: float,
        code: str = "remote_command_failed",
    ) -> None:
        result = self._call(handle, command, args, timeout=timeout)
        if result.get("timedOut"):
            raise ProviderError(f"{command} {args[0]} timed out after {timeout:.0f}s", code=code)
        if result.get("exitCode") != 0:
            lines = (result.get("stderr") or result.get("stdout") or "").strip().splitlines()
            reason = lines[-1] if lines else f"exit {result.get('exitCode')}"
            raise ProviderError(f"{command} {args[0]} failed: {reason}", code=code)

    def destroy(self, key: str, handle: SandboxHandle | None) -> None:
        """Remove the working copy from its host; the host itself stays (it is shared)."""
        server = self.allocator.allocate(key)
        target = handle or SandboxHandle(
            base_url=server.url, token=server.token, workdir=self._workdir(key)
        )
        with contextlib.suppress(ProviderError, ProviderUnavailable):
            workdir = self._workdir(key)
            self._run(target, "rm", ["-rf", "--", workdir, f"{workdir}.home"], timeout=60)
        self.allocator.release(key)
