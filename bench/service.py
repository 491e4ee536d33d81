"""Benchmark the whole service: real Daphne, Celery worker, Redis, sandbox-agent, on SQLite
and PostgreSQL, driven by an open-loop asyncio load generator (httpx + websockets).

    .venv/bin/python bench/service.py                      # both databases, ~10 minutes
    .venv/bin/python bench/service.py --db sqlite --smoke --write /tmp/bench.md

Each database runs in its own child process (Django can be set up once per process): it
starts a throwaway PostgreSQL cluster (or a temporary SQLite file), Redis, `manage.py
migrate`, one Daphne (DJANGO_SETTINGS_MODULE=bench.settings: the production routes plus a
trivial endpoint and the inline variant; `--web-processes N`: the Procfile's web tier,
config.web with N Daphnes on one port, instead), and a `celery -A config worker -c 2` per scenario,
all on loopback ports; everything is stopped at the end, also on Ctrl-C or an error.
The parent writes the `## Service` section of docs/benchmarks.md (see `--write`).

Scenarios, in order (each starts from a drained queue and destroys its sandboxes after):
1. tab creation latency at 1, 20 and 50 requests/s, workers saturated by slow provisioning,
   then with instant provisioning; each next to a trivial endpoint at the same rate;
2. the same request against the inline variant (provisioning inside the request);
3. commit-to-client latency of a tab event for 1,000, 100, 10 and 1 websocket clients, and
   memory per idle websocket;
4. POST-to-ready minus the provider's own time, and Celery enqueue-to-start;
5. one task opened by 100 concurrent tabs: sandboxes created and time to all ready;
6. sustained tab creations per second (a rising ladder of rates);
and more (bench/scenarios.py SCENARIOS), among them `workspace_size` (bench/workspace_size.py):
connect-to-snapshot, snapshot size and queries for workspaces of 10 tasks, 10,000 tasks and
10,000 open tabs, REST list pages of 100 vs 10,000 rows, and another member's pings while
one member reconnects to the large workspace; then `post_cpu` (bench/post_cpu.py): Daphne's
CPU per tab POST against the trivial endpoint's, and 100 concurrent opens of one task. Only
with `--only web_tier` (bench/web_tier.py): those 100 concurrent opens at 1 and at 2 web
processes (config.web), alternating in one run; with `--only burst_floor`
(bench/burst_floor.py, needs ApacheBench): 100 trivial GETs and 100 tab opens at once, sent
by the bench's httpx load generator and by `ab`, alternating.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

SECTION = "## Service"
DEFAULT_OUTPUT = REPO_ROOT / "docs" / "benchmarks.md"


# -- configuration --------------------------------------------------------------------------


@dataclass
class Config:
    """Sizes of every scenario; `smoke()` shrinks them to seconds for CI."""

    smoke: bool = False
    users: int = 40  # load spread over members, each under the default per-user throttle
    slow_delay: float = 5.0  # seconds of simulated provider latency when "slow"
    rates: list[tuple[float, float]] = field(
        default_factory=lambda: [(1, 10.0), (20, 10.0), (50, 8.0)]
    )  # (requests/s, seconds) for tab creation; the trivial endpoint runs half as long
    inline_rates: list[tuple[float, float]] = field(
        default_factory=lambda: [(1, 5.0), (20, 3.0), (50, 2.0)]
    )
    ws_sizes: list[int] = field(default_factory=lambda: [1000, 100, 10, 1])
    ws_events: int = 20
    ws_rate: float = 4.0  # tab events per second while clients listen
    ws_rate_large: float = 2.0  # for 1,000 clients
    order_clients: int = 1000
    order_rounds: int = 15
    order_interval: float = 1.0  # seconds between rounds of concurrent writes
    order_writers: int = 3  # bench.touch tasks per round, over both worker pools
    order_patches: int = 1  # task renames per round (Daphne's request threads)
    orch_count: int = 20
    orch_rate: float = 2.0
    burst_tabs: int = 100
    waiting_tabs: int = 50
    waiting_delay: float = 20.0  # seconds the one provisioning run takes in "waiting"
    history_tabs: int = 10_000  # closed tabs on the task and the poster in "history"
    history_rounds: int = 5
    history_per_round: int = 20  # sequential tab POSTs per task per round
    # "workspace_size" (bench/workspace_size.py): workspaces of 10 tasks, of size_tasks tasks
    # and of size_tab_tasks x size_tabs_per_task open tabs, written directly.
    size_small_tasks: int = 10  # the reference workspace: this many tasks, one open tab each
    size_tasks: int = 10_000  # tasks (each with a sandbox and its steps), a few tabs
    size_tab_tasks: int = 50
    size_tabs_per_task: int = 200  # the default per-task open-tab cap
    size_connects: int = 20  # sequential connects per workspace
    size_connect_timeout: float = 60.0  # seconds a connect may wait for its snapshot
    size_connect_budget: float = 30.0  # no further connect of a workspace after this many s
    size_list_tasks: int = 100  # REST: the small list (tasks of a workspace, closed tabs)
    size_closed_tabs: int = 10_000  # REST: closed tabs of the large tab list
    size_rest_requests: int = 20  # GETs of each list (alternating small and large)
    size_ping_rate: float = 10.0  # another member's pings per second (the frame budget's rate)
    size_ping_seconds: float = 10.0  # per condition (idle, loaded)
    size_reconnect_loops: int = 3  # concurrent back-to-back reconnect loops ("flood")
    size_reconnect_interval: float = 1.0  # "paced": one connect a second (the default limit)
    # "post_cpu" (bench/post_cpu.py): Daphne's CPU per tab POST next to the trivial
    # endpoint's, and cpu_burst_rounds bursts of cpu_burst_tabs concurrent opens of one task.
    cpu_requests: int = 300  # measured requests of each kind (tab POST, trivial GET)
    cpu_rounds: int = 6  # chunks of each kind, alternating
    # A closed loop of this many requests at a time; sequential, because 4 in flight already
    # kept one Daphne ~97% busy on tab POSTs, so their wall times were mostly queueing.
    cpu_in_flight: int = 1
    cpu_tasks: int = 10  # the tab POSTs go round-robin over this many fresh tasks
    cpu_warmup: int = 20  # unmeasured requests of each kind first
    cpu_idle_seconds: float = 2.0  # Daphne's idle CPU rate is measured this long
    cpu_settle: float = 0.25  # seconds after a chunk's last response before CPU is read
    cpu_burst_tabs: int = 100
    cpu_burst_rounds: int = 3  # each burst on a fresh task
    # "web_tier" (bench/web_tier.py, only with --only): bursts of cpu_burst_tabs at 1 and at 2
    # web processes, this many rounds of each, alternating, the tier restarted between rounds
    tier_rounds: int = 4
    ladder: list[tuple[float, float]] = field(
        default_factory=lambda: [
            (20, 4.0),
            (35, 4.0),
            (50, 4.0),
            (75, 4.0),
            (100, 4.0),
            (150, 4.0),
            (200, 4.0),
        ]
    )
    ladder_pool: int = 16
    ready_timeout: float = 120.0
    worker_nice: int | None = None  # run the workers under `nice -n N` (None: as the Procfile)
    # None: one Daphne (config.server); N: the Procfile's web tier, config.web with N Daphnes
    web_processes: int | None = None
    priority: int = 0  # niceness of the whole run (see --priority)

    @classmethod
    def for_smoke(cls) -> Config:
        """Every scenario, a few requests each (CI checks the harness, not the numbers)."""
        return cls(
            smoke=True,
            users=4,
            slow_delay=1.0,
            rates=[(1, 1.0), (20, 0.15), (50, 0.06)],
            inline_rates=[(1, 1.0), (20, 0.05), (50, 0.02)],
            ws_sizes=[2, 1],
            ws_events=2,
            ws_rate=10.0,
            order_clients=2,
            order_rounds=2,
            order_interval=0.5,
            orch_count=2,
            orch_rate=4.0,
            burst_tabs=5,
            waiting_tabs=3,
            waiting_delay=1.0,
            history_tabs=50,
            history_rounds=1,
            history_per_round=2,
            size_small_tasks=3,
            size_tasks=40,
            size_tab_tasks=2,
            size_tabs_per_task=5,
            size_connects=2,
            size_connect_timeout=20.0,
            size_connect_budget=10.0,
            size_list_tasks=5,
            size_closed_tabs=20,
            size_rest_requests=2,
            size_ping_seconds=1.0,
            size_reconnect_loops=2,
            cpu_requests=8,
            cpu_rounds=2,
            cpu_tasks=2,
            cpu_warmup=2,
            cpu_idle_seconds=0.2,
            cpu_settle=0.05,
            cpu_burst_tabs=5,
            cpu_burst_rounds=1,
            tier_rounds=1,
            ladder=[(20, 0.5)],
            ladder_pool=2,
            ready_timeout=60.0,
        )


# -- the parent: one child per database, then the report ------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="sqlite,postgres", help="sqlite, postgres or both")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CI): under a minute")
    parser.add_argument(
        "--write",
        default=str(DEFAULT_OUTPUT),
        help="Markdown file whose '## Service' section is replaced ('' to skip)",
    )
    parser.add_argument("--json", default="", help="also write the raw results here")
    parser.add_argument(
        "--worker-nice",
        type=int,
        default=None,
        help="run the Celery workers under nice -n N (default: as the Procfile says)",
    )
    parser.add_argument(
        "--web-processes",
        type=int,
        default=None,
        help="start the Procfile's web tier (config.web) with N Daphnes on one port instead "
        "of one Daphne (config.server)",
    )
    parser.add_argument(
        "--priority",
        type=int,
        default=0,
        help="niceness of the whole run (services and load generator); negative values need "
        "root and favour the run over other jobs on a shared machine",
    )
    parser.add_argument(
        "--only", default="", help="a comma-separated subset of scenarios (no report is written)"
    )
    parser.add_argument(
        "--render", default="", help="only rewrite --write's section from a saved --json file"
    )
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--result", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    config = Config.for_smoke() if args.smoke else Config()
    config.worker_nice = args.worker_nice
    if args.web_processes is not None and args.web_processes < 1:
        parser.error("--web-processes must be at least 1")
    config.web_processes = args.web_processes
    config.priority = args.priority
    only = tuple(name for name in args.only.split(",") if name)
    if args.child:
        raise SystemExit(child_main(args.child, Path(args.result), config, only))

    if args.render:
        from bench.report import render

        saved = json.loads(Path(args.render).read_text())
        replace_section(Path(args.write), SECTION, render(saved, saved["command"]))
        print(f"wrote the '{SECTION}' section of {args.write} from {args.render}")
        return
    dbs = [db.strip() for db in args.db.split(",") if db.strip()]
    unknown = set(dbs) - {"sqlite", "postgres"}
    if unknown:
        parser.error(f"unknown --db {sorted(unknown)}")
    results: dict[str, Any] = {"machine": machine_info(dbs), "config": asdict(config), "db": {}}
    started = time.time()
    for db in dbs:
        results["db"][db] = run_child(db, config, only)
    results["machine"]["wall_seconds"] = round(time.time() - started)
    results["command"] = command_line(args)
    from bench.report import git_revision

    results["revision"] = git_revision()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    failed = [db for db, r in results["db"].items() if "error" in r]
    if args.write and not only:
        from bench.report import render

        replace_section(Path(args.write), SECTION, render(results, results["command"]))
        print(f"wrote the '{SECTION}' section of {args.write}")
    if failed:
        raise SystemExit(f"benchmark failed for {failed}")


def command_line(args: argparse.Namespace) -> str:
    parts = [".venv/bin/python bench/service.py"]
    if args.db != "sqlite,postgres":
        parts.append(f"--db {args.db}")
    if args.smoke:
        parts.append("--smoke")
    if args.worker_nice is not None:
        parts.append(f"--worker-nice {args.worker_nice}")
    if args.web_processes is not None:
        parts.append(f"--web-processes {args.web_processes}")
    if args.priority:
        parts.append(f"--priority {args.priority}")
    return " ".join(parts)


def run_child(db: str, config: Config, only: tuple[str, ...]) -> dict[str, Any]:
    """Run one database's scenarios in a child process; its results, or the error."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        result_path = Path(handle.name)
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", db, "--result",
            str(result_path), "--priority", str(config.priority)]  # fmt: skip
    if config.worker_nice is not None:
        argv += ["--worker-nice", str(config.worker_nice)]
    if config.web_processes is not None:
        argv += ["--web-processes", str(config.web_processes)]
    if config.smoke:
        argv.append("--smoke")
    if only:
        argv += ["--only", ",".join(only)]
    print(f"== {db}: starting services", flush=True)
    proc = subprocess.Popen(argv, cwd=REPO_ROOT)

    interrupted = []

    def forward(signum: int, frame: object) -> None:
        interrupted.append(signum)
        proc.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        # Ctrl-C reached the child too (same process group): let it clean up.
        proc.wait()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    if interrupted:
        result_path.unlink(missing_ok=True)
        raise SystemExit(f"interrupted by signal {interrupted[0]}; {db} run stopped")
    try:
        data = json.loads(result_path.read_text()) if result_path.stat().st_size else {}
    finally:
        result_path.unlink(missing_ok=True)
    if code != 0 and "error" not in data:
        data["error"] = f"the {db} run exited with code {code}"
    return data


def machine_info(dbs: list[str]) -> dict[str, Any]:
    from importlib.metadata import version

    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
    info: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "load_before": os.getloadavg(),
    }
    for package in ("django", "djangorestframework", "celery", "channels", "channels-redis",
                    "daphne", "twisted", "psycopg", "httpx", "websockets"):  # fmt: skip
        with contextlib.suppress(Exception):
            info[package] = version(package)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
        info["redis"] = out.stdout.split("v=")[1].split()[0]
    if "postgres" in dbs:
        from bench.stack import postgres_bin_dir

        bindir = postgres_bin_dir()
        if bindir is not None:
            out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True,
                                 text=True, check=False)  # fmt: skip
            found = re.search(r"\d+(\.\d+)+", out.stdout)
            info["postgresql"] = found.group(0) if found else out.stdout.strip()
    with contextlib.suppress(Exception):
        packages = REPO_ROOT / "node_modules" / "@sandbox-agent"
        agent = next(packages.glob("cli-*/bin/sandbox-agent"))
        out = subprocess.run([str(agent), "--version"], capture_output=True, text=True, timeout=10)
        info["sandbox_agent"] = out.stdout.strip().split()[-1]
    return info


def replace_section(path: Path, heading: str, body: str) -> None:
    # Imported late: bench/channel_layers.py sets Django up when imported.
    from bench.channel_layers import replace_section as replace

    replace(path, heading, body)


# -- the child: one database ----------------------------------------------------------------


def child_main(db: str, result_path: Path, config: Config, only: tuple[str, ...]) -> int:
    from bench.stack import Stack, raise_open_files_limit

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
    if config.priority:
        os.setpriority(os.PRIO_PROCESS, 0, config.priority)  # inherited by every service
    raise_open_files_limit()
    stack = Stack(
        db,
        daphne_delay=config.slow_delay,
        worker_nice=config.worker_nice,
        web_processes=config.web_processes,
    )
    results: dict[str, Any] = {"db": db, "load_before": os.getloadavg()}
    code = 0
    try:
        stack.start()
        # This process's Django talks to the same database and Redis as the services.
        env = stack.env()
        for key in ("DATABASE_URL", "WORKBENCH_SQLITE_PATH", "REDIS_URL", "DJANGO_SETTINGS_MODULE",
                    "WORKBENCH_VAR_DIR", "WORKBENCH_SANDBOX_ROOT"):  # fmt: skip
            if key in env:
                os.environ[key] = env[key]
        import django

        django.setup()
        import logging

        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
        from bench import scenarios

        results["pools"] = [asdict(pool) for pool in stack.pools]
        results.update(scenarios.run_all(stack, config, log=log, only=only or scenarios.SCENARIOS))
    except KeyboardInterrupt:
        results["error"] = "interrupted"
        code = 130
    except Exception as exc:
        import traceback

        traceback.print_exc()
        results["error"] = f"{type(exc).__name__}: {exc}"
        results["logs"] = stack_logs(stack)
        code = 1
    finally:
        results["load_after"] = os.getloadavg()
        stack.shutdown()
        result_path.write_text(json.dumps(results, default=str))
    return code


def stack_logs(stack: Any) -> str:
    tails = []
    for process in (stack.redis, stack.daphne, *stack.workers):
        if process is not None:
            with contextlib.suppress(Exception):
                tails.append(f"--- {process.label}\n{process.log_tail(30)}")
    return "\n".join(tails)


def log(message: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')} {message}", flush=True)


if __name__ == "__main__":
    main()
