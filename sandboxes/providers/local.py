"""The local provider: a working copy on disk and a sandbox-agent server process for it.

Layout under WORKBENCH_SANDBOX_ROOT/<key>/: `work/` (the working copy), `home/` (the server's
own HOME, where it installs agents), `server.log`, `server.pid`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from django.conf import settings

from sandboxes.providers import confinement, git
from sandboxes.providers.agent_server import AgentServerProvider
from sandboxes.providers.base import (
    ProviderError,
    SandboxHandle,
    SandboxSpec,
    StepLog,
    StepRecorder,
)

logger = logging.getLogger(__name__)


def sandbox_agent_binary() -> str:
    """The sandbox-agent executable: the setting, else the npm package's platform binary."""
    configured = settings.WORKBENCH_SANDBOX_AGENT_BIN
    if configured:
        return configured
    packages = Path(settings.BASE_DIR) / "node_modules" / "@sandbox-agent"
    for candidate in sorted(packages.glob("cli-*/bin/sandbox-agent")):
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("sandbox-agent")
    if found:
        return found
    raise ProviderError(
        "the sandbox-agent binary is not installed (run `make setup`, or set "
        "WORKBENCH_SANDBOX_AGENT_BIN)",
        code="sandbox_agent_missing",
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(path: Path, limit: int = 600) -> str:
    try:
        return path.read_text(errors="replace")[-limit:].strip()
    except OSError:
        return ""


def _git_argv(
    args: list[str], *, base: Path, env: dict[str, str], confined: bool, read_only: list[Path]
) -> list[str]:
    """git's command line, confined to the sandbox's directory when the host can confine it."""
    if not confined:
        return ["git", *args]
    return confinement.git_command(
        args, base=base, home=Path(env["HOME"]), env=env, read_only=read_only
    )


def _git(
    args: list[str],
    *,
    base: Path,
    env: dict[str, str],
    timeout: float,
    confined: bool,
    read_only: list[Path],
    log: StepLog,
) -> tuple[int, str]:
    """Run git, passing its progress lines (git.PROGRESS: a clone's meters) to `log` as they
    come; returns its exit status and the tail of what it printed (for operators only)."""
    deadline = time.monotonic() + timeout
    output, pending = bytearray(), b""
    timed_out = ProviderError(f"git timed out after {timeout:.0f}s", code="clone_timeout")
    with subprocess.Popen(
        _git_argv(args, base=base, env=env, confined=confined, read_only=read_only),
        cwd=base,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stderr is not None
        try:
            with selectors.DefaultSelector() as ready:
                ready.register(process.stderr, selectors.EVENT_READ)
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise timed_out
                    if not ready.select(timeout=min(left, 1.0)):
                        continue
                    chunk = os.read(process.stderr.fileno(), 65536)
                    if not chunk:
                        break
                    output = (output + chunk)[-65536:]
                    # Progress meters rewrite their line with a carriage return.
                    *lines, pending = re.split(rb"[\r\n]", pending + chunk)
                    for raw in lines:
                        line = raw.decode("utf-8", "replace").strip()
                        if git.PROGRESS.match(line):
                            log(line)
            try:
                returncode = process.wait(timeout=max(deadline - time.monotonic(), 1.0))
            except subprocess.TimeoutExpired:
                raise timed_out from None
        finally:
            # Whatever ended the read (a timeout, a failed log write), git does not outlive
            # it: Popen's exit would otherwise wait for it without a bound.
            if process.poll() is None:
                process.kill()
    return returncode, output.decode("utf-8", "replace")


class LocalProvider(AgentServerProvider):
    name = "local"

    def __init__(self, root: Path | None = None):
        self.root = Path(root or settings.WORKBENCH_SANDBOX_ROOT)

    # -- create ---------------------------------------------------------------------------

    def plan(self, spec: SandboxSpec) -> list[str]:
        delay = ["simulated_delay"] if settings.WORKBENCH_LOCAL_PROVISION_DELAY > 0 else []
        return [*delay, "prepare_workspace", "start_server", "wait_healthy", "install_agent"]

    def create(self, spec: SandboxSpec, *, step: StepRecorder) -> SandboxHandle:
        """Steps: prepare_workspace, start_server, wait_healthy, install_agent.

        Idempotent per key: a server still running from a crashed run of the same key is
        reused; otherwise what the crashed run left on disk is replaced.
        """
        base = self.root / spec.key
        workdir, home = base / "work", base / "home"
        handle = self._running_handle(base)
        try:
            if handle is None:
                isolation = confinement.mode()
                if not isolation.confined:
                    confinement.warn_unconfined(spec.key, isolation.reason)
                if settings.WORKBENCH_LOCAL_PROVISION_DELAY > 0:
                    with step("simulated_delay") as log:
                        log(f"Waiting {settings.WORKBENCH_LOCAL_PROVISION_DELAY:g}s (configured)")
                        time.sleep(settings.WORKBENCH_LOCAL_PROVISION_DELAY)
                with step("prepare_workspace") as log:
                    self._prepare_workspace(spec, base, workdir, home, isolation.confined, log)
                with step("start_server") as log:
                    log(
                        "Starting the sandbox-agent server"
                        + (
                            " in its own namespaces, without network"
                            if isolation.confined
                            else " (unconfined on this host)"
                        )
                    )
                    handle = self._start_server(base, workdir, home, isolation.confined)
                    log("Started")
            with step("wait_healthy") as log:
                started = time.monotonic()
                self._wait_healthy(handle)
                log(f"The server answered after {(time.monotonic() - started) * 1000:.0f} ms")
            with step("install_agent") as log:
                log(f"Installing the {spec.agent} agent")
                self._install_agent(handle, spec.agent)
                log("Installed")
        except ProviderError:
            # A failed attempt leaks no process: the next attempt has a new key anyway.
            self.destroy(spec.key, handle)
            raise
        return handle

    def _prepare_workspace(
        self,
        spec: SandboxSpec,
        base: Path,
        workdir: Path,
        home: Path,
        confined: bool,
        log: StepLog,
    ) -> None:
        repository = git.admitted(spec.repository)  # again: the row may predate the policy
        if base.exists():
            shutil.rmtree(base)
        home.mkdir(parents=True)
        env = git.git_env(repository, home=str(home))
        timeout = settings.WORKBENCH_CLONE_TIMEOUT
        if repository is not None:
            log(git.cloning_line(spec.repository, spec.branch))
            returncode, output = _git(
                git.clone_args(repository, spec.branch, str(workdir), progress=True),
                base=base,
                env=env,
                timeout=timeout,
                confined=confined,
                read_only=[repository.path] if repository.path else [],
                log=log,
            )
            if returncode != 0:
                raise git.clone_failed(output, branch=spec.branch, key=spec.key)
            log("Cloned")
        else:
            log(git.empty_line(spec.branch))
            workdir.mkdir()
            returncode, output = _git(
                ["-C", str(workdir), "init", "--quiet", "-b", spec.branch or "main"],
                base=base,
                env=env,
                timeout=timeout,
                confined=confined,
                read_only=[],
                log=log,
            )
            if returncode != 0:
                logger.info("git init for sandbox %s failed: %s", spec.key, output[-2000:])
                raise ProviderError("git init of the working copy failed", code="clone_failed")

    def _start_server(self, base: Path, workdir: Path, home: Path, confined: bool) -> SandboxHandle:
        binary = sandbox_agent_binary()
        # Hex: a urlsafe token may start with '-', which the CLI would read as an option.
        token = secrets.token_hex(32)
        pidfile, logfile = base / "server.pid", base / "server.log"
        pidfile.unlink(missing_ok=True)
        if confined:
            # Its own namespaces: no other sandbox sees its command line (the token) or
            # reaches its socket; it sees nothing of the host but /usr (confinement.py).
            run = base / "run"
            run.mkdir(exist_ok=True)
            # The sandbox's host uid may traverse to its own directories, and enter only them.
            for directory in (self.root, base):
                directory.chmod(0o711)
            confinement.check_reachable(base)
            uid = confinement.host_uid(base.name)
            confinement.give_to_sandbox(uid, workdir, home, run)
            command, base_url = confinement.server_command(
                key=base.name,
                agent_binary=binary,
                base=base,
                workdir=workdir,
                home=home,
                run=run,
                token=token,
            )
            env = {"PATH": "/usr/bin:/bin"}  # the wrapper's; the sandbox gets --clearenv
        else:
            port = _free_port()
            base_url = f"http://127.0.0.1:{port}"
            command = [binary, "server", "--no-telemetry", "--host", "127.0.0.1"]
            command += ["--port", str(port), f"--token={token}"]
            # Not the service's environment (its secrets): only what the server needs.
            env = {
                "HOME": str(home),
                "PATH": "/usr/local/bin:/usr/bin:/bin",
                "LANG": "C.UTF-8",
                "SANDBOX_AGENT_BIN": binary,
            }
        # `setsid --fork` detaches the server into its own session so it outlives the Celery
        # task and is never our zombie; the shell records the pid that `exec` keeps.
        with logfile.open("ab") as log:
            subprocess.run(
                [
                    "setsid",
                    "--fork",
                    "sh",
                    "-c",
                    'echo $$ > "$0"; exec "$@"',
                    str(pidfile),
                    *command,
                ],
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                check=True,
                timeout=10,
            )
        deadline = time.monotonic() + 5
        while not pidfile.exists() or not pidfile.read_text().strip():
            if time.monotonic() > deadline:
                raise ProviderError(
                    "sandbox-agent server did not start", code="server_start_failed"
                )
            time.sleep(0.01)
        pid = int(pidfile.read_text().strip())
        (base / "server.url").write_text(base_url)
        (base / "server.token").write_text(token)
        (base / "server.token").chmod(0o600)
        return SandboxHandle(base_url=base_url, token=token, workdir=str(workdir), pid=pid)

    def _running_handle(self, base: Path) -> SandboxHandle | None:
        """The handle of a server a previous run of this key left running, if it answers."""
        try:
            pid = int((base / "server.pid").read_text().strip())
            url = (base / "server.url").read_text().strip()
            token = (base / "server.token").read_text().strip()
        except (OSError, ValueError):
            return None
        handle = SandboxHandle(base_url=url, token=token, workdir=str(base / "work"), pid=pid)
        if _pid_alive(pid) and self.health(handle):
            return handle
        self._kill(pid)
        return None

    # -- what the shared sandbox-agent provider asks of a local process ----------------------

    def _alive(self, handle: SandboxHandle) -> bool:
        return handle.pid is None or _pid_alive(handle.pid)

    def _dead_reason(self, handle: SandboxHandle) -> str:
        log = _tail(Path(handle.workdir).parent / "server.log") if handle.workdir else ""
        return f"sandbox-agent server exited: {log or 'no output'}"

    def destroy(self, key: str, handle: SandboxHandle | None) -> None:
        base = self.root / key
        pids = {handle.pid} if handle and handle.pid else set()
        with contextlib.suppress(OSError, ValueError):
            pids.add(int((base / "server.pid").read_text().strip()))
        for pid in pids:
            self._kill(pid)
        shutil.rmtree(base, ignore_errors=True)

    @staticmethod
    def _kill(pid: int, grace: float = 5.0) -> None:
        """SIGTERM the server's process group (it and its agent processes), then SIGKILL."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                if not _pid_alive(pid):
                    return
                time.sleep(0.02)
