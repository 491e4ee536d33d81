"""How much of a burst's latency is the load generator's (issue 16's concurrent opens).

Runs in bench/service.py's child process as the `burst_floor` scenario, only when asked for
(`--only burst_floor`): it needs ApacheBench (`ab`, Debian's apache2-utils). The issue's
line is the p99 of 100 concurrent tab opens (at most 250 ms on SQLite, 400 ms on
PostgreSQL). The other scenarios send bursts with the bench's Python load generator (httpx),
which runs on the same two cores as the service; `ab` is C and costs a small part of that.
For `tier_rounds` rounds, alternating which goes first, each sends:

1. `cpu_burst_tabs` (100) GET /bench/noop/ at once (the trivial authenticated endpoint,
   the floor);
2. as many POST /api/tasks/{id}/tabs/ at once on a fresh task, carried to ready by the
   Procfile's worker pools (instant provider) before the next burst.

httpx sends as the fixture's members in turn; `ab` as one member (it sends one header set),
which stays under the per-user tab rate. Each is timed from its connect to its response's
end: ab's percentiles, the open loop's from the scheduled send.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
from typing import TYPE_CHECKING, Any

from bench.loadgen import stats

if TYPE_CHECKING:
    from collections.abc import Callable

    from bench.scenarios import Fixture
    from bench.service import Config
    from bench.stack import Stack

    Log = Callable[[str], None]

_PERCENT = re.compile(r"^\s+(\d+)%\s+(\d+)", re.MULTILINE)
_FAILURES = re.compile(r"\(Connect: (\d+), Receive: (\d+), Length: \d+, Exceptions: (\d+)\)")
_NON_2XX = re.compile(r"Non-2xx responses:\s+(\d+)")


def ab_burst(url: str, token: str, *, count: int, post: bool) -> dict[str, Any]:
    """`count` requests at once with ApacheBench: its p50 and p99 (ms) and any failure. A
    response of another length than the first is not one (tabs' bodies differ)."""
    args = ["ab", "-q", "-n", str(count), "-c", str(count), "-H", f"Authorization: Token {token}"]
    with tempfile.NamedTemporaryFile("w", suffix=".json") as body:
        body.write("{}")
        body.flush()
        if post:
            args += ["-p", body.name, "-T", "application/json"]
        done = subprocess.run([*args, url], capture_output=True, text=True, timeout=120)
    percent = {int(p): float(ms) for p, ms in _PERCENT.findall(done.stdout)}
    failures = _FAILURES.search(done.stdout)
    non_2xx = _NON_2XX.search(done.stdout)
    errors = sum(int(n) for n in failures.groups()) if failures else 0
    errors += int(non_2xx.group(1)) if non_2xx else 0
    if done.returncode != 0 or 50 not in percent or 99 not in percent:
        raise RuntimeError(f"ab failed ({done.returncode}): {done.stdout[-500:]}{done.stderr}")
    return {"p50": percent[50], "p99": percent[99], "errors": errors}


def _httpx_burst(fx: Fixture, cfg: Config, *, post: bool) -> dict[str, Any]:
    from bench.post_cpu import BURST_RATE
    from bench.scenarios import new_tasks, noop_phase, tab_phase

    count = cfg.cpu_burst_tabs
    if post:
        tasks = new_tasks(fx, 1, "burst floor httpx")
        run = asyncio.run(tab_phase(fx, tasks, rate=BURST_RATE, count=count))
    else:
        run = asyncio.run(noop_phase(fx, rate=BURST_RATE, seconds=count / BURST_RATE))
    summary = run.summary()
    return {"p50": summary["p50"], "p99": summary["p99"], "errors": summary["errors"] or 0}


def _ab_burst(fx: Fixture, cfg: Config, *, post: bool) -> dict[str, Any]:
    from bench.scenarios import new_tasks

    path = f"/api/tasks/{new_tasks(fx, 1, 'burst floor ab')[0]}/tabs/" if post else "/bench/noop/"
    return ab_burst(fx.base_url + path, fx.tokens[0], count=cfg.cpu_burst_tabs, post=post)


def burst_floor(stack: Stack, fx: Fixture, cfg: Config, log: Log) -> dict[str, Any]:
    if shutil.which("ab") is None:
        raise RuntimeError("burst_floor needs ApacheBench: apt-get install apache2-utils")
    stack.start_workers(delay=0.0)
    try:
        rounds = _rounds(fx, cfg, log)
    finally:
        stack.stop_workers()
        stack.purge_queues()
    keys = ("httpx_get", "ab_get", "httpx_post", "ab_post")
    return {
        "rounds": rounds,
        "p99": {key: stats([r[key]["p99"] for r in rounds]) for key in keys},
        "errors": {key: sum(r[key]["errors"] for r in rounds) for key in keys},
    }


def _rounds(fx: Fixture, cfg: Config, log: Log) -> list[dict[str, Any]]:
    from bench.scenarios import wait_for_tabs, warm_workers

    warm_workers(fx, cfg)
    senders = {"httpx": _httpx_burst, "ab": _ab_burst}
    rounds: list[dict[str, Any]] = []
    for n in range(max(1, cfg.tier_rounds)):
        order = ["httpx", "ab"] if n % 2 == 0 else ["ab", "httpx"]
        row: dict[str, Any] = {}
        for post in (False, True):
            for sender in order:
                row[f"{sender}_{'post' if post else 'get'}"] = senders[sender](fx, cfg, post=post)
                if post:  # carried to ready: the next burst does not meet this one's work
                    wait_for_tabs({"workspace_id": fx.workspace_id}, cfg.ready_timeout)
        rounds.append(row)
        log(
            "   round {}: trivial GET p99 httpx {:.0f} / ab {:.0f} ms; tab POST p99 httpx {:.0f}"
            " / ab {:.0f} ms".format(
                n + 1,
                row["httpx_get"]["p99"],
                row["ab_get"]["p99"],
                row["httpx_post"]["p99"],
                row["ab_post"]["p99"],
            )
        )
    return rounds
