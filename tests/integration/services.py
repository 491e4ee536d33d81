"""Real processes for integration tests: Redis, Celery workers and Daphne.

Each process:
- runs on a free loopback port, in its own session (process group), so stopping it also
  stops whatever it forked (Celery pool children, sandbox-agent servers, agents);
- writes stdout and stderr to one log file per start under the run's log directory, so a
  failing test can show what the services did (see `IntegrationRun.log_sections`);
- is ready only when a real condition holds (PING answered by *this* Redis, "ready." in the
  worker's log, 200 from Daphne's /healthz), polled against a deadline, never a fixed sleep.

Every child environment carries a run marker; at the end of the session any process still
carrying it (an orphan that left its process group) is killed as a last resort.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import redis

from tests.helpers import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
# The venv's console scripts (celery, daphne) live next to the interpreter running pytest.
BIN_DIR = Path(sys.executable).parent
RUN_MARKER_VAR = "WORKBENCH_ITEST_RUN"
LOOPBACK = "127.0.0.1"


class ServiceError(RuntimeError):
    """A service failed to start, exited early, or did not become ready in time."""


def free_port() -> int:
    """A loopback TCP port that is free right now (the OS may hand it out again later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def database_url_for(database_url: str, database_name: str) -> str:
    """`database_url` pointing at `database_name` (the test database) instead."""
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(path="/" + quote(database_name)))


def build_child_env(
    *,
    redis_url: str,
    run_dir: Path,
    database_name: str,
    marker: str,
    extra: Mapping[str, str | None] | None = None,
) -> dict[str, str]:
    """The environment for a service process: the test process's, pointed at test resources.

    `database_name` is the test database pytest-django created (a SQLite file path, or a
    Postgres database name when DATABASE_URL is set). `extra` adds variables; a value of None
    removes one.
    """
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "REDIS_URL": redis_url,
            "WORKBENCH_VAR_DIR": str(run_dir),
            "WORKBENCH_SANDBOX_ROOT": str(sandbox_root_of(run_dir)),
            # Tests make their repositories in pytest's tmp_path, beside the run directory.
            "WORKBENCH_REPOSITORY_ROOTS": str(run_dir.parent),
            "PYTHONUNBUFFERED": "1",  # logs reach the file as they happen
            RUN_MARKER_VAR: marker,
        }
    )
    if env.get("DATABASE_URL"):
        # Same server and credentials, but the test database pytest-django created
        # (test_<name>), not the development one the URL names.
        env["DATABASE_URL"] = database_url_for(env["DATABASE_URL"], database_name)
    else:
        if "memory" in database_name:
            raise ServiceError(
                f"the test database {database_name!r} is in memory; other processes cannot "
                "share it (set DATABASES['default']['TEST']['NAME'] to a file)"
            )
        env["WORKBENCH_SQLITE_PATH"] = database_name
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


class ManagedProcess:
    """One service process, restartable, with a log file per start."""

    name: ClassVar[str] = "process"
    start_timeout: ClassVar[float] = 60.0

    def __init__(self, *, log_dir: Path, env: Mapping[str, str], label: str | None = None):
        self.label = label or self.name
        self.log_dir = log_dir
        self.env = dict(env)
        self.log_paths: list[Path] = []
        self._proc: subprocess.Popen[bytes] | None = None
        # Every process group ever started, so stop() also reaches pool children orphaned
        # by an earlier kill() of the leader alone.
        self._pgids: list[int] = []
        # Called after every successful start, e.g. to drop the test process's pooled
        # connections to a Redis that was just restarted.
        self.after_start: list[Callable[[], None]] = []

    # -- to override -----------------------------------------------------------------------
    def command(self) -> list[str]:
        raise NotImplementedError

    def is_ready(self) -> bool:
        raise NotImplementedError

    def describe_wait(self) -> str:
        return "ready"

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        if self._proc is None:
            raise ServiceError(f"{self.label} was never started")
        return self._proc.pid

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    @property
    def log_path(self) -> Path:
        if not self.log_paths:
            raise ServiceError(f"{self.label} was never started")
        return self.log_paths[-1]

    def start(self) -> Self:
        """Start the process and block until it is ready (or raise ServiceError)."""
        if self.alive:
            raise ServiceError(f"{self.label} is already running (pid {self.pid})")
        argv = self.command()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{self.label}.{len(self.log_paths) + 1}.log"
        self.log_paths.append(log_path)
        with log_path.open("ab") as log:
            log.write(f"$ {shlex.join(argv)}\n".encode())
            log.flush()
            try:
                self._proc = subprocess.Popen(
                    argv,
                    cwd=REPO_ROOT,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own process group: see stop()
                )
            except OSError as exc:
                raise ServiceError(f"could not start {self.label}: {exc}") from exc
        self._pgids.append(self._proc.pid)  # session leader: pgid == pid
        try:
            wait_until(
                self._ready_or_raise,
                timeout=self.start_timeout,
                interval=0.05,
                message=lambda: (
                    f"{self.label} not {self.describe_wait()}\n{self.log_tail(40, prefix='  ')}"
                ),
            )
        except AssertionError as exc:
            self.stop()
            raise ServiceError(str(exc)) from None
        except ServiceError:
            self.stop()
            raise
        for callback in self.after_start:
            callback()
        return self

    def _ready_or_raise(self) -> bool:
        code = self.returncode
        if code is not None:
            raise ServiceError(
                f"{self.label} exited with code {code} before it was "
                f"{self.describe_wait()}\n{self.log_tail(40, prefix='  ')}"
            )
        return self.is_ready()

    def kill(self, sig: int = signal.SIGKILL, *, group: bool = True, timeout: float = 30.0) -> None:
        """Send `sig` to the process (its whole group if `group`) and wait until it exits.

        `group=False` signals the leader alone, e.g. SIGTERM for a Celery warm shutdown, or
        SIGKILL leaving pool children orphaned as after an OOM kill of the main process.
        """
        if not self.alive:
            return
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(self._pgids[-1], sig)
            else:
                os.kill(self.pid, sig)
        assert self._proc is not None
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ServiceError(
                f"{self.label} (pid {self.pid}) still running {timeout:g}s after signal {sig}"
            ) from None

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Freeze the whole process group (SIGSTOP) for the block, then let it go on: a
        worker held mid-step, so a test can look at that moment without racing it."""
        os.killpg(self._pgids[-1], signal.SIGSTOP)
        try:
            yield
        finally:
            os.killpg(self._pgids[-1], signal.SIGCONT)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the leader, SIGKILL it after `timeout`, then SIGKILL every group it had."""
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.terminate()
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self._proc.kill()
                self._proc.wait(timeout=timeout)
        for pgid in self._pgids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        self._pgids = []

    def restart(self) -> Self:
        """Stop (if running) and start again with the same port, name and environment."""
        self.stop()
        return self.start()

    # -- logs ------------------------------------------------------------------------------
    def read_log(self) -> str:
        """Everything the current (latest) start has written."""
        return self.log_path.read_text(errors="replace") if self.log_paths else ""

    def log_tail(self, lines: int = 100, *, prefix: str = "") -> str:
        text = self.read_log().splitlines()[-lines:]
        return "\n".join(prefix + line for line in text)


class RedisServer(ManagedProcess):
    """A throwaway redis-server: no persistence, loopback only."""

    name = "redis"
    start_timeout = 30.0

    def __init__(
        self, *, log_dir: Path, data_dir: Path, env: Mapping[str, str], port: int | None = None
    ):
        super().__init__(log_dir=log_dir, env=env)
        self.port = port or free_port()
        self.data_dir = data_dir
        self.url = f"redis://{LOOPBACK}:{self.port}/0"

    def command(self) -> list[str]:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceError("redis-server is not installed (run `make setup`)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return [
            binary,
            "--port", str(self.port),
            "--bind", LOOPBACK,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.data_dir),
        ]  # fmt: skip

    def describe_wait(self) -> str:
        return f"answering PING on port {self.port}"

    def client(self, **kwargs: Any) -> redis.Redis:
        """A new client for this server (close it, or use it as a context manager)."""
        return redis.Redis.from_url(self.url, **kwargs)

    def is_ready(self) -> bool:
        # Also check the answer comes from *our* server: another process may have taken
        # the port between free_port() and our bind, and then ours exits.
        with (
            contextlib.suppress(redis.RedisError, OSError),
            self.client(socket_connect_timeout=0.5, socket_timeout=0.5) as client,
        ):
            return bool(client.ping()) and client.info("server")["process_id"] == self.pid
        return False


class CeleryWorker(ManagedProcess):
    """`celery -A config worker`, ready once its log says '<nodename> ready.'."""

    name = "celery-worker"

    def __init__(
        self,
        *,
        log_dir: Path,
        env: Mapping[str, str],
        nodename: str,
        concurrency: int = 2,
        extra_args: Iterable[str] = (),
        label: str | None = None,
    ):
        super().__init__(log_dir=log_dir, env=env, label=label)
        self.nodename = nodename
        self.concurrency = concurrency
        self.extra_args = list(extra_args)

    def command(self) -> list[str]:
        return [
            str(BIN_DIR / "celery"),
            "-A", "config",
            "worker",
            "-l", "info",
            "-c", str(self.concurrency),
            "--without-gossip",
            "--without-mingle",
            "-n", self.nodename,
            *self._queues(),
            *self.extra_args,
        ]  # fmt: skip

    def _queues(self) -> list[str]:
        """Every work queue, unless the test names its own with -Q."""
        if "-Q" in self.extra_args:
            return []
        from django.conf import settings

        return ["-Q", ",".join(settings.WORKBENCH_WORK_QUEUES)]

    def describe_wait(self) -> str:
        return f"logging '{self.nodename} ready.'"

    def is_ready(self) -> bool:
        # Logged by the worker_ready step, after the task and control (pidbox) consumers
        # are attached to the broker, so a ping or a task sent now is handled.
        return f"{self.nodename} ready." in self.read_log()


class DaphneServer(ManagedProcess):
    """Daphne serving config.asgi:application, ready once GET /healthz returns 200 and
    /readyz finds its snapshot builders started (its other checks are the stack's, not
    this process's)."""

    name = "daphne"

    def __init__(
        self,
        *,
        log_dir: Path,
        env: Mapping[str, str],
        port: int | None = None,
        label: str | None = None,
    ):
        super().__init__(log_dir=log_dir, env=env, label=label)
        self.port = port or free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.ws_url = f"ws://{LOOPBACK}:{self.port}"
        self._last_status: int | None = None
        self._builders: str | None = None

    def command(self) -> list[str]:
        # One Daphne as the Procfile's web tier runs each (config/web.py): config.server
        # refuses oversized bodies unread.
        return [
            sys.executable, "-m", "config.server",
            "-b", LOOPBACK,
            "-p", str(self.port),
            "config.asgi:application",
        ]  # fmt: skip

    def describe_wait(self) -> str:
        return (
            f"answering 200 on {self.url}/healthz (last status: {self._last_status}) "
            f"and builders ok on /readyz (last: {self._builders})"
        )

    def is_ready(self) -> bool:
        try:
            response = httpx.get(f"{self.url}/healthz", timeout=1.0)
            self._last_status = response.status_code
            if response.status_code != 200:
                return False
            # Its worker ping waits out 1 s; a database down waits out the pool's timeout.
            readiness = httpx.get(f"{self.url}/readyz", timeout=30.0).json()
        except (httpx.TransportError, ValueError):  # ValueError: not JSON (yet)
            return False
        self._builders = readiness["checks"].get("builders", "none (threads)")
        return self._builders in ("ok", "none (threads)")


def sandbox_root_of(run_dir: Path) -> Path:
    """Where a run's sandboxes live: outside pytest's base directory, which pytest keeps
    at mode 0700 (re-set by every pytest session that starts), while confined sandboxes run
    as uids of their own that must traverse to their directories."""
    return Path(tempfile.gettempdir()) / f"workbench-sandboxes-{run_dir.parent.name}-{run_dir.name}"


def kill_sandbox_servers(sandbox_root: Path) -> list[int]:
    """SIGKILL every confined sandbox server of this run (a test that died before its
    teardown): they carry no environment of ours, but their command line names the run's
    sandbox root."""
    needle = str(sandbox_root).encode()
    killed = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith((b"bwrap\0", b"setpriv\0")) and needle in cmdline:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
    return killed


def kill_marked_orphans(marker: str) -> list[int]:
    """SIGKILL every process whose environment carries this run's marker; return their pids.

    The last resort for descendants that left their process group (e.g. a provider that
    starts sandbox-agent with start_new_session=True). Linux only; elsewhere a no-op.
    """
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    needle = f"{RUN_MARKER_VAR}={marker}".encode()
    killed = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:  # gone, or not ours
            continue
        if needle in environ:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
    return killed


@dataclass
class IntegrationRun:
    """Where one pytest session's services live, and the list of them, for cleanup."""

    root: Path
    marker: str
    processes: list[ManagedProcess] = field(default_factory=list)

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def sandbox_root(self) -> Path:
        return sandbox_root_of(self.root)

    def add(self, process: ManagedProcess) -> ManagedProcess:
        self.processes.append(process)
        return process

    def shutdown(self) -> list[int]:
        """Stop every process (most recent first), then kill marked orphans; return their pids."""
        for process in reversed(self.processes):
            with contextlib.suppress(Exception):
                process.stop()
        orphans = kill_marked_orphans(self.marker) + kill_sandbox_servers(self.sandbox_root)
        # SIGKILLed orphans are reaped by init; give them a moment to disappear from /proc.
        deadline = time.monotonic() + 5.0
        while orphans and time.monotonic() < deadline:
            if not any(Path(f"/proc/{pid}").exists() for pid in orphans):
                break
            time.sleep(0.05)
        return orphans

    def log_offsets(self) -> dict[Path, int]:
        """Current size of every log file, to show only what a test added."""
        offsets = {}
        for process in self.processes:
            for path in process.log_paths:
                with contextlib.suppress(OSError):
                    offsets[path] = path.stat().st_size
        return offsets

    def log_sections(
        self, since: Mapping[Path, int] | None = None, max_chars: int = 20_000
    ) -> list[tuple[str, str]]:
        """(title, text) for each log that grew since `since`, its last `max_chars`."""
        since = since or {}
        sections = []
        for process in self.processes:
            for path in process.log_paths:
                try:
                    with path.open("rb") as handle:
                        handle.seek(since.get(path, 0))
                        data = handle.read()
                except OSError:
                    continue
                if not data:
                    continue
                text = data.decode(errors="replace")
                if len(text) > max_chars:
                    text = "[... truncated ...]\n" + text[-max_chars:]
                sections.append((f"service log {process.label} ({path})", text))
        return sections
