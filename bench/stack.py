"""The service processes one benchmark run starts, and their cleanup.

Redis, Celery worker and Daphne come from the integration-test harness
(tests/integration/services.py): loopback ports, one process group each, a log file per
start, readiness polled on a real condition. PostgreSQL is a throwaway cluster made here.
Every child carries a run marker, so whatever escaped its process group (sandbox-agent
servers are started with setsid) is killed at the end.
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
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.integration.services import (
    RUN_MARKER_VAR,
    CeleryWorker,
    DaphneServer,
    RedisServer,
    ServiceError,
    free_port,
    kill_marked_orphans,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
# Kombu's Redis transport keeps unacknowledged messages here, and each queue in a list per
# priority step (the queue's name, then name + "\x06\x16" + step).
UNACKED_KEYS = ("unacked", "unacked_index")
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (3, 6, 9)


@dataclass(frozen=True)
class WorkerPool:
    """One `celery worker` line of the Procfile: its name, queues, concurrency, niceness."""

    name: str
    queues: str  # comma-separated, as for -Q ("" = every queue)
    concurrency: int
    niceness: int = 0  # a leading `nice -n N`


def procfile_pools(path: Path = REPO_ROOT / "Procfile") -> list[WorkerPool]:
    """The Celery worker pools `make run` starts, so the benchmark runs the same ones."""
    pools = []
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            name, _, command = line.partition(":")
            argv = shlex.split(command)
            niceness = 0
            if argv[:2] == ["nice", "-n"]:
                niceness, argv = int(argv[2]), argv[3:]
            if "celery" not in " ".join(argv[:1]) or "worker" not in argv:
                continue
            queues = argv[argv.index("-Q") + 1] if "-Q" in argv else ""
            concurrency = int(argv[argv.index("-c") + 1]) if "-c" in argv else 2
            pools.append(WorkerPool(name.strip(), queues, concurrency, niceness))
    return pools or [WorkerPool("worker", "", 2)]


def postgres_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin, if PostgreSQL is installed."""
    dirs = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: [int(x) if x.isdigit() else x for x in p.parent.name.split(".")],
    )
    return dirs[-1] if dirs else None


class PostgresCluster:
    """A throwaway cluster: initdb into a temporary directory, loopback port, socket in that
    directory. fsync and synchronous_commit are off (benchmark data only): commits then cost
    what SQLite's WAL with synchronous=NORMAL costs, no disk flush."""

    def __init__(self) -> None:
        bindir = postgres_bin_dir()
        if bindir is None:
            raise ServiceError("PostgreSQL is not installed (apt-get install -y postgresql)")
        self.bin = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="workbench-bench-pg-"))
        self.port = free_port()
        self.url = f"postgres://postgres@{LOOPBACK}:{self.port}/workbench"
        # initdb refuses to run as root: run the cluster as the postgres user.
        self.as_owner: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            self.as_owner = ["runuser", "-u", "postgres", "--"]
        self.started = False

    def _run(self, *argv: str) -> str:
        result = subprocess.run(
            [*self.as_owner, *argv], capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            raise ServiceError(f"{argv[0]} failed: {result.stderr or result.stdout}")
        return result.stdout

    def start(self) -> None:
        data = self.dir / "data"
        self._run(str(self.bin / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                  "-E", "UTF8")  # fmt: skip
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses={LOOPBACK} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=500"
        )
        self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-l", str(self.dir / "server.log"),
                  "-w", "-o", options, "start")  # fmt: skip
        self.started = True
        self._run(str(self.bin / "createdb"), "-h", str(self.dir), "-p", str(self.port),
                  "-U", "postgres", "workbench")  # fmt: skip

    def version(self) -> str:
        out = subprocess.run(
            [str(self.bin / "postgres"), "--version"], capture_output=True, text=True, check=False
        )
        return out.stdout.strip().split()[-1] if out.stdout else "?"

    def stop(self) -> None:
        if self.started:
            with contextlib.suppress(ServiceError, subprocess.TimeoutExpired):
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m",
                          "immediate", "stop")  # fmt: skip
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)


def raise_open_files_limit(wanted: int = 16384) -> int:
    """Raise RLIMIT_NOFILE (children inherit it): 1,000 sockets need 1,000+ descriptors in
    the load generator and as many in Daphne."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class NicedCeleryWorker(CeleryWorker):
    """A Celery worker run at a lower CPU priority (`nice -n N`): background work then
    yields the CPU to Daphne when both want it (and so do the sandbox-agent servers it
    starts, which inherit the niceness)."""

    def __init__(self, *, niceness: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.niceness = niceness

    def command(self) -> list[str]:
        return ["nice", "-n", str(self.niceness), *super().command()]


class WebTier(DaphneServer):
    """The Procfile's web tier: `python -m config.web --processes N`, N Daphnes on one port
    (each on its own SO_REUSEPORT socket), as `make run` starts it. Ready once /healthz
    answers and every one of the N has logged that it listens: the first to answer says
    nothing about the others, and a connection the kernel gives a Daphne still importing
    Django would wait in its socket's backlog, inside a measurement."""

    name = "web-tier"

    def __init__(self, *, processes: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.processes = max(1, processes)

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "config.web", "--processes", str(self.processes),
            "-b", LOOPBACK, "-p", str(self.port), "config.asgi:application",
        ]  # fmt: skip

    def describe_wait(self) -> str:
        return f"{self.processes} Daphnes listening and {super().describe_wait()}"

    def is_ready(self) -> bool:
        return self.read_log().count("Listening on TCP address") >= self.processes and (
            super().is_ready()
        )


class Stack:
    """Redis, the database, the web tier and (per scenario) the Procfile's Celery workers.

    `web_processes=None` starts one Daphne (`config.server`) as before; a number starts the
    Procfile's tier (`config.web`) with that many Daphnes, so 1 and 2 differ only in count.
    """

    def __init__(
        self,
        db: str,
        *,
        daphne_delay: float,
        worker_nice: int | None = None,
        web_processes: int | None = None,
    ) -> None:
        self.db = db
        self.root = Path(tempfile.mkdtemp(prefix=f"workbench-bench-{db}-"))
        self.root.chmod(0o711)  # confined sandboxes' own uids traverse it to their directories
        self.marker = uuid.uuid4().hex
        self.sandbox_root = self.root / "sandboxes"
        self.sandbox_root.mkdir()
        self.log_dir = self.root / "logs"
        self.postgres: PostgresCluster | None = None
        self.redis: RedisServer | None = None
        self.daphne: DaphneServer | None = None
        self.pools = procfile_pools()
        self.workers: list[CeleryWorker] = []
        self.worker_delay: float | None = None
        self.daphne_delay = daphne_delay
        self.worker_nice = worker_nice
        self.web_processes = web_processes
        self._workers = 0
        self.database_env: dict[str, str] = {}

    # -- environment ---------------------------------------------------------------------------
    def env(self, **extra: Any) -> dict[str, str]:
        """The environment of a service process (and of this process's Django)."""
        env = dict(os.environ)
        env.pop("DATABASE_URL", None)
        env.update(self.database_env)
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "bench.settings",
                "REDIS_URL": self.redis.url if self.redis else "",
                "WORKBENCH_VAR_DIR": str(self.root),
                "WORKBENCH_SANDBOX_ROOT": str(self.sandbox_root),
                # Quotas are still counted on every request; they are only set high enough
                # that thousands of benchmark tabs are not refused. The per-user throttle
                # keeps its default: the load is spread over enough users to stay under it.
                "WORKBENCH_MAX_OPEN_TABS_PER_TASK": "1000000",
                "WORKBENCH_MAX_OPEN_TABS_PER_USER": "1000000",
                # Scenario 3 opens 1,000 websockets as one user: past the per-user cap and
                # connect rate, which are set out of its way the same way.
                "WORKBENCH_MAX_SOCKETS_PER_USER": "1000000",
                # The benchmark's tasks are all one workspace's: its share of provisioning
                # runs would measure the fairness cap, not the service.
                "WORKBENCH_MAX_PROVISIONING_PER_WORKSPACE": "1000000",
                "WORKBENCH_SOCKET_CONNECT_RATE": "1000000/min",
                "PYTHONUNBUFFERED": "1",
                RUN_MARKER_VAR: self.marker,
            }
        )
        env.update({key: str(value) for key, value in extra.items()})
        return env

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Database, Redis, migrations, the web tier. Workers are started per scenario."""
        if self.db == "postgres":
            self.postgres = PostgresCluster()
            self.postgres.start()
            self.database_env = {"DATABASE_URL": self.postgres.url}
        else:
            self.database_env = {"WORKBENCH_SQLITE_PATH": str(self.root / "bench.sqlite3")}
        self.redis = RedisServer(log_dir=self.log_dir, data_dir=self.root / "redis", env=self.env())
        self.redis.start()
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "--skip-checks", "-v", "0"],
            cwd=REPO_ROOT,
            env=self.env(),
            check=True,
            timeout=300,
        )
        web_env = self.env(WORKBENCH_LOCAL_PROVISION_DELAY=self.daphne_delay)
        if self.web_processes is None:
            self.daphne = DaphneServer(log_dir=self.log_dir, env=web_env)
        else:
            self.daphne = WebTier(log_dir=self.log_dir, env=web_env, processes=self.web_processes)
        self.daphne.start()

    @property
    def provision_slots(self) -> int:
        """Worker processes that run provisioning (the pool consuming `provision`)."""
        return sum(
            pool.concurrency
            for pool in self.pools
            if not pool.queues or "provision" in pool.queues.split(",")
        )

    def start_workers(self, *, delay: float) -> list[CeleryWorker]:
        """Fresh workers, one per Procfile pool, whose provider spends `delay` s in a
        recorded `simulated_delay` step; the previous workers and their backlog are dropped."""
        self.stop_workers()
        self._workers += 1
        for pool in self.pools:
            label = f"{pool.name}-{self._workers}"
            worker = NicedCeleryWorker(
                niceness=pool.niceness if self.worker_nice is None else self.worker_nice,
                log_dir=self.log_dir,
                env=self.env(WORKBENCH_LOCAL_PROVISION_DELAY=delay),
                nodename=f"{label}-{os.getpid()}@{socket.gethostname()}",
                concurrency=pool.concurrency,
                extra_args=["-Q", pool.queues] if pool.queues else [],
                label=label,
            )
            self.workers.append(worker)
            worker.start()
        self.worker_delay = delay
        return self.workers

    def stop_workers(self) -> None:
        """SIGKILL the workers (a warm shutdown would wait for multi-second steps), drop
        their queues, and destroy every sandbox they made."""
        for worker in self.workers:
            with contextlib.suppress(ServiceError):
                worker.kill(signal.SIGKILL)
            worker.stop()
        self.workers = []
        self.worker_delay = None
        self.purge_queues()
        self.destroy_sandboxes()

    def purge_queues(self) -> None:
        """Delete every work queue (all priority steps) and the unacknowledged messages."""
        from django.conf import settings

        keys = list(UNACKED_KEYS)
        for queue in settings.WORKBENCH_WORK_QUEUES:
            keys += [queue, *(f"{queue}{PRIORITY_SEPARATOR}{step}" for step in PRIORITY_STEPS)]
        if self.redis is not None and self.redis.alive:
            with self.redis.client() as client:
                client.delete(*keys)

    def destroy_sandboxes(self) -> None:
        """Kill every sandbox-agent server under the sandbox root (its process group: the
        server and its agent processes) and remove its files. SIGKILL at once, unlike the
        provider's graceful destroy: these are throwaway and there may be hundreds."""
        for base in sorted(self.sandbox_root.iterdir()):
            if not base.is_dir():
                continue
            with contextlib.suppress(OSError, ValueError, ProcessLookupError, PermissionError):
                os.killpg(int((base / "server.pid").read_text().strip()), signal.SIGKILL)
            shutil.rmtree(base, ignore_errors=True)

    def shutdown(self) -> None:
        """Stop everything this run started, whatever state it is in."""
        for worker in self.workers:
            with contextlib.suppress(Exception):
                worker.kill(signal.SIGKILL)
                worker.stop()
        with contextlib.suppress(Exception):
            self.destroy_sandboxes()
        for process in (self.daphne, self.redis):
            if process is not None:
                with contextlib.suppress(Exception):
                    process.stop()
        kill_marked_orphans(self.marker)
        if self.postgres is not None:
            self.postgres.stop()
        time.sleep(0.1)
        shutil.rmtree(self.root, ignore_errors=True)

    def rss_kib(self, pid: int) -> int:
        """VmRSS of a process in KiB (Linux)."""
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise ServiceError(f"no VmRSS for pid {pid}")

    def daphne_pids(self) -> list[int]:
        """The Daphne process this stack started and every live descendant of it (a web tier
        such as config/web.py runs its Daphnes as children), e.g. to add up their CPU time."""
        if self.daphne is None or not self.daphne.alive:
            raise ServiceError("Daphne is not running")
        return process_tree(self.daphne.pid)


def process_tree(root: int) -> list[int]:
    """`root` and its live descendants, from /proc/<pid>/stat's parent pids (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return sorted(found)
