"""One member's socket flood against another member's connect (issue 12, finding 4).

    .venv/bin/python bench/socket_flood.py                   # 390 tasks, 200 sockets
    .venv/bin/python bench/socket_flood.py --tasks 100 --sockets 50 --json /tmp/flood.json

Starts Redis and one Daphne on SQLite (bench/stack.py), gives the attacker a workspace of
`--tasks` tasks with a tab each (a snapshot of a few hundred KB), then opens `--sockets`
websockets as the attacker all at once. Meanwhile a victim, a member of another workspace
with one task, connects again and again (every `--victim-interval` s, each attempt waiting
up to `--attempt-timeout` s for its snapshot), until the flood has settled. Prints the
victim's connect-to-snapshot times before and during the flood, and what the attacker's
sockets got (snapshots, refusals). Daphne runs with the service's own socket limits;
`--env KEY=VALUE` passes other settings (say, WORKBENCH_MAX_SOCKETS_PER_USER=1000 to see the
flood without the cap). docs/benchmarks.md, `## Socket flood`, is written from its output.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


@dataclass
class Attempt:
    started: float  # seconds since the flood began
    seconds: float | None  # connect to snapshot; None if it failed
    outcome: str  # "snapshot", "timeout", or the error


@dataclass
class Result:
    snapshot_bytes: int
    sockets: int
    baseline: list[float] = field(default_factory=list)
    during: list[Attempt] = field(default_factory=list)
    attacker: dict[str, int] = field(default_factory=dict)
    flood_seconds: float = 0.0


async def connect_for_snapshot(url: str, token: str, timeout: float) -> tuple[str, Any]:
    """Open a socket and wait for its first frame: ("snapshot", ws), ("closed", code)..."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    try:
        async with asyncio.timeout(timeout):
            ws = await connect(
                url,
                additional_headers={"Authorization": f"Token {token}"},
                compression=None,
                max_size=None,
                ping_interval=None,
                open_timeout=None,
                close_timeout=1,
            )
            try:
                raw = await ws.recv(decode=False)
            except ConnectionClosed:
                return "closed", ws.close_code
            kind = json.loads(raw).get("type")
            return ("snapshot", ws) if kind == "snapshot" else (f"frame:{kind}", ws)
    except TimeoutError:
        return "timeout", None
    except Exception as exc:  # a refused handshake, a reset connection
        return type(exc).__name__, None


async def victim_once(url: str, token: str, timeout: float) -> tuple[float | None, str]:
    start = time.monotonic()
    outcome, ws = await connect_for_snapshot(url, token, timeout)
    elapsed = time.monotonic() - start
    if ws is not None and not isinstance(ws, int):
        await ws.close()
    return (elapsed if outcome == "snapshot" else None), outcome


async def flood(args: argparse.Namespace, fx: dict[str, Any], result: Result) -> None:
    for _ in range(5):
        seconds, outcome = await victim_once(fx["victim_url"], fx["victim_token"], 30)
        assert seconds is not None, f"the victim could not connect before the flood: {outcome}"
        result.baseline.append(seconds)

    began = time.monotonic()
    attackers = [
        asyncio.create_task(
            connect_for_snapshot(fx["attacker_url"], fx["attacker_token"], args.flood_timeout)
        )
        for _ in range(args.sockets)
    ]
    # The victim keeps trying while the attacker's connects are being served, one attempt
    # every --victim-interval seconds at most (under its own connect rate).
    while not all(task.done() for task in attackers) or len(result.during) < 3:
        offset = time.monotonic() - began
        seconds, outcome = await victim_once(
            fx["victim_url"], fx["victim_token"], args.attempt_timeout
        )
        result.during.append(Attempt(round(offset, 2), seconds, outcome))
        if time.monotonic() - began > args.flood_timeout + args.attempt_timeout:
            break
        pause = offset + args.victim_interval - (time.monotonic() - began)
        if pause > 0:
            await asyncio.sleep(pause)  # pacing the load, not waiting for a condition
    result.flood_seconds = round(time.monotonic() - began, 2)
    outcomes: dict[str, int] = {}
    for task in attackers:
        outcome, ws = await task
        key = f"closed {ws}" if outcome == "closed" else outcome
        outcomes[key] = outcomes.get(key, 0) + 1
        if ws is not None and not isinstance(ws, int):
            await ws.close()
    result.attacker = outcomes


def make_fixture(stack: Any, tasks: int) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from core import services as core_services
    from tasks_app import services as task_services
    from workbench import selectors
    from workbench.models import WorkbenchTab

    users = get_user_model().objects
    attacker, victim = users.create_user("attacker"), users.create_user("victim")
    big = core_services.workspace_create(user=attacker, name="Attacker's")
    small = core_services.workspace_create(user=victim, name="Victim's")
    title = "a task with a long enough title to look like a real one " * 2
    for n in range(tasks):
        task = task_services.task_create(workspace_id=big.pk, user=attacker, title=f"{n} {title}")
        # A tab row per task, written directly: no provisioning is wanted, only its size.
        WorkbenchTab.objects.create(
            task=task, workspace=big, title=f"tab {n}", agent="mock", created_by=attacker
        )
    task_services.task_create(workspace_id=small.pk, user=victim, title="mine")
    snapshot = selectors.workbench_snapshot(workspace=big, user_id=attacker.pk)
    ws = stack.daphne.ws_url
    return {
        "snapshot_bytes": len(json.dumps(snapshot)),
        "attacker_token": Token.objects.create(user=attacker).key,
        "victim_token": Token.objects.create(user=victim).key,
        "attacker_url": f"{ws}/ws/workspaces/{big.pk}/",
        "victim_url": f"{ws}/ws/workspaces/{small.pk}/",
    }


def summary(result: Result) -> dict[str, Any]:
    served = [a.seconds for a in result.during if a.seconds is not None]
    return {
        "snapshot_kib": round(result.snapshot_bytes / 1024),
        "attacker_sockets": result.sockets,
        "attacker_outcomes": result.attacker,
        "flood_seconds": result.flood_seconds,
        "victim_baseline_ms": round(statistics.median(result.baseline) * 1000, 1),
        "victim_attempts": len(result.during),
        "victim_failed": sum(1 for a in result.during if a.seconds is None),
        "victim_median_ms": round(statistics.median(served) * 1000) if served else None,
        "victim_max_ms": round(max(served) * 1000) if served else None,
        "first_attempt": asdict(result.during[0]) if result.during else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=390)
    parser.add_argument("--sockets", type=int, default=200)
    parser.add_argument("--attempt-timeout", type=float, default=10.0)
    parser.add_argument("--flood-timeout", type=float, default=120.0)
    parser.add_argument("--victim-interval", type=float, default=1.5)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for Daphne")
    parser.add_argument("--json", default="", help="also write the raw attempts here")
    parser.add_argument("--logs", default="", help="copy the services' logs to this directory")
    args = parser.parse_args()

    from bench.stack import Stack, raise_open_files_limit

    raise_open_files_limit()
    stack = Stack("sqlite", daphne_delay=0.0)
    extra = dict(item.split("=", 1) for item in args.env)
    original_env = stack.env

    def env(**more: Any) -> dict[str, str]:
        # The service's own socket limits (the benchmark stack lifts them), unless --env says.
        values = original_env(**{**extra, **more})
        for key in ("WORKBENCH_MAX_SOCKETS_PER_USER", "WORKBENCH_SOCKET_CONNECT_RATE"):
            if key not in extra:
                values.pop(key, None)
        return values

    stack.env = env  # type: ignore[method-assign]
    try:
        stack.start()
        env = stack.env()
        for key in ("WORKBENCH_SQLITE_PATH", "REDIS_URL", "DJANGO_SETTINGS_MODULE",
                    "WORKBENCH_VAR_DIR", "WORKBENCH_SANDBOX_ROOT"):  # fmt: skip
            os.environ[key] = env[key]
        import django

        django.setup()
        fx = make_fixture(stack, args.tasks)
        result = Result(snapshot_bytes=fx["snapshot_bytes"], sockets=args.sockets)
        asyncio.run(flood(args, fx, result))
    finally:
        if args.logs:
            shutil.copytree(stack.log_dir, args.logs, dirs_exist_ok=True)
        stack.shutdown()
    print(json.dumps(summary(result), indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(result), indent=1))


if __name__ == "__main__":
    main()
