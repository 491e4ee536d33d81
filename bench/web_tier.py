"""Concurrent tab opens at 1 vs 2 web processes, alternating in one run (issue 16).

Runs in bench/service.py's child process as the `web_tier` scenario, only when asked for
(`--only web_tier`): it restarts the web tier between rounds. The issue's targets are the
p99 of 100 concurrent opens in one workspace, at most 250 ms on SQLite and 400 ms on
PostgreSQL; the web tier (config/web.py, what `make run` starts) is how a host gives HTTP
more than one core. On a machine whose load drifts, runs of 1 and 2 processes minutes apart
compare the load as much as the tier, so here they alternate within one run:

1. the Procfile's worker pools are started (instant provider) and warmed once;
2. for each round, in the order 1, 2, 2, 1, 1, 2, ... (`tier_rounds` of each count), the web
   tier is restarted on the same port with that many Daphnes (`config.web --processes N`);
   each of its processes is warmed by a burst of trivial requests and one of tab opens
   (their connections spread over the processes as real clients' do), carried to ready;
3. then, as in `post_cpu`: the floor, `cpu_burst_tabs` GET /bench/noop/ sent at once; then
   `cpu_burst_tabs` POST /api/tasks/{id}/tabs/ sent at once on a fresh task, by the
   fixture's members in turn; the POSTs are carried to ready before the next round.

At the end the stack's own web server is started again as it was.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import TYPE_CHECKING, Any

from bench.loadgen import stats

if TYPE_CHECKING:
    from collections.abc import Callable

    from bench.scenarios import Fixture
    from bench.service import Config
    from bench.stack import Stack

    Log = Callable[[str], None]

COUNTS = (1, 2)
WARM_TABS = 40


def round_order(rounds: int) -> list[int]:
    """1, 2, 2, 1, 1, 2, ...: each count as often, neither always first."""
    order: list[int] = []
    for n in range(max(1, rounds)):
        order += list(COUNTS if n % 2 == 0 else COUNTS[::-1])
    return order


def _switch(stack: Stack, processes: int) -> None:
    """Replace the stack's web server by the Procfile's tier with `processes` Daphnes, on the
    same port (the fixture's URLs stay valid)."""
    from bench.stack import WebTier

    current = stack.daphne
    assert current is not None
    current.stop()
    stack.daphne = WebTier(
        log_dir=stack.log_dir,
        env=current.env,
        port=current.port,
        processes=processes,
        label=f"web-tier-{processes}",
    )
    stack.daphne.start()


def _warm(fx: Fixture, cfg: Config) -> None:
    from bench.post_cpu import BURST_RATE
    from bench.scenarios import new_tasks, noop_phase, tab_phase, wait_for_tabs

    asyncio.run(noop_phase(fx, rate=BURST_RATE, seconds=cfg.cpu_burst_tabs / BURST_RATE))
    (task,) = new_tasks(fx, 1, "web_tier warm-up")
    asyncio.run(tab_phase(fx, [task], rate=BURST_RATE, count=min(WARM_TABS, cfg.cpu_burst_tabs)))
    wait_for_tabs({"task_id": task}, cfg.ready_timeout)


def web_tier(stack: Stack, fx: Fixture, cfg: Config, log: Log) -> dict[str, Any]:
    from bench.post_cpu import BURST_RATE
    from bench.scenarios import new_tasks, noop_phase, tab_phase, wait_for_tabs, warm_workers

    original = stack.daphne
    assert original is not None
    stack.start_workers(delay=0.0)
    warm_workers(fx, cfg)
    rounds: list[dict[str, Any]] = []
    try:
        for n, processes in enumerate(round_order(cfg.tier_rounds)):
            _switch(stack, processes)
            _warm(fx, cfg)
            (task,) = new_tasks(fx, 1, f"web_tier burst {n}")
            load = os.getloadavg()[0]
            trivial = asyncio.run(
                noop_phase(fx, rate=BURST_RATE, seconds=cfg.cpu_burst_tabs / BURST_RATE)
            )
            time.sleep(0.25)
            run = asyncio.run(tab_phase(fx, [task], rate=BURST_RATE, count=cfg.cpu_burst_tabs))
            ready, pending = wait_for_tabs({"task_id": task}, cfg.ready_timeout)
            post, floor = run.summary(), trivial.summary()
            rounds.append(
                {
                    "processes": processes,
                    "load": load,
                    "post": post,
                    "post_latencies": run.latencies_ms(),
                    "trivial": floor,
                    "trivial_latencies": trivial.latencies_ms(),
                    "ready": ready,
                    "pending": pending,
                }
            )
            log(
                f"   {processes} web process(es): {post['ok']}/{post['sent']} ok, p50 "
                f"{post['p50']:.1f} p99 {post['p99']:.1f} ms (trivial p50 {floor['p50']:.1f} "
                f"p99 {floor['p99']:.1f} ms), errors {post['errors'] or 0}; {ready} ready, "
                f"{pending} pending; load {load:.2f}"
            )
    finally:
        stack.stop_workers()
        current = stack.daphne
        if current is not original and current is not None:
            current.stop()
            stack.daphne = original
            original.start()
    out: dict[str, Any] = {"tabs": cfg.cpu_burst_tabs, "rate": BURST_RATE, "rounds": rounds}
    for processes in COUNTS:
        mine = [r for r in rounds if r["processes"] == processes]
        out[str(processes)] = {
            "post": stats([v for r in mine for v in r["post_latencies"]]),
            "trivial": stats([v for r in mine for v in r["trivial_latencies"]]),
            "post_p99_rounds": [r["post"]["p99"] for r in mine],
            "errors": sum(sum(r["post"]["errors"].values()) for r in mine),
        }
    one, two = out["1"], out["2"]
    out["p99_ratio"] = two["post"]["p99"] / one["post"]["p99"] if one["post"]["p99"] else None
    out["p50_ratio"] = two["post"]["p50"] / one["post"]["p50"] if one["post"]["p50"] else None
    log(
        f"   2 vs 1 web processes: POST p50 x{out['p50_ratio']:.2f}, p99 x{out['p99_ratio']:.2f} "
        f"(pooled p99 {one['post']['p99']:.1f} -> {two['post']['p99']:.1f} ms; trivial p99 "
        f"{one['trivial']['p99']:.1f} -> {two['trivial']['p99']:.1f} ms)"
    )
    return out
