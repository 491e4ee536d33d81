"""Daphne's CPU per tab POST, and many concurrent opens of one task (issue 16).

Runs in bench/service.py's child process (Django set up against the services' database), as
the `post_cpu` scenario. The issue's targets: Daphne CPU per tab POST at most 3x the trivial
endpoint's; 100 concurrent opens in one workspace: p99 at most 250 ms on SQLite and 400 ms
on PostgreSQL.

1. Concurrent opens (run first, with the Procfile's worker pools up and warmed, instant
   provider, as in the `burst` scenario): `cpu_burst_rounds` bursts of `cpu_burst_tabs`
   `POST /api/tasks/{id}/tabs/`, each burst on a fresh task of the bench workspace, sent at
   2,000/s (open loop, so all are in flight at once) by the fixture's members in turn; the
   POST latencies, from the scheduled send to the end of the response. The workers then
   carry every tab to ready before the next burst. Just before each, the floor: as many
   `GET /bench/noop/` sent the same way.
2. CPU per request (no worker running, so nothing but the requests reaches Daphne; the
   messages the POSTs dispatch wait in Redis and are purged after): `cpu_requests` tab POSTs
   (`{}`, round-robin over `cpu_tasks` fresh tasks and the fixture's members) and as many
   `GET /bench/noop/` (the trivial endpoint of `noop_phase`: token auth and nothing else), in
   a closed loop of `cpu_in_flight` requests at a time on kept-alive connections, so the
   figure is CPU per request and not queueing. The two alternate in `cpu_rounds` chunks
   each (drift hits both alike), after `cpu_warmup` unmeasured requests of each (with
   cpu_warmup >= cpu_tasks, each task's first tab, which creates its sandbox row, is one
   of them). Daphne's CPU is utime + stime of /proc/<pid>/stat (every thread of the
   process; clock ticks, 10 ms) summed over the Daphne process the stack started and its
   descendants (`Stack.daphne_pids`), read before a chunk and `cpu_settle` s after its last
   response (work a request leaves behind, e.g. its event reaching Daphne's fan-out, is
   counted). Daphne's idle CPU rate, over `cpu_idle_seconds` before the chunks, is
   reported, not subtracted: it is about a tick per few seconds, below what one window can
   resolve.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from bench.loadgen import make_client, stats

if TYPE_CHECKING:
    from collections.abc import Callable

    from bench.scenarios import Fixture
    from bench.service import Config
    from bench.stack import Stack

    Log = Callable[[str], None]

TICK = os.sysconf("SC_CLK_TCK")
KINDS = ("post", "trivial")
BURST_RATE = 2000.0  # requests/s: as the `burst` scenario sends its tabs


# -- Daphne's CPU ----------------------------------------------------------------------------


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of these processes (each one's threads included), in seconds."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError as exc:
            raise RuntimeError(f"Daphne process {pid} went away during the measurement") from exc
        total += int(fields[11]) + int(fields[12])
    return total / TICK


async def idle_rate(pids: list[int], seconds: float) -> float:
    """Daphne's CPU seconds per second with nothing sent to it."""
    before, began = cpu_seconds(pids), time.monotonic()
    await asyncio.sleep(seconds)
    return (cpu_seconds(pids) - before) / (time.monotonic() - began)


# -- 2. CPU per request ----------------------------------------------------------------------


async def closed_loop(
    client: httpx.AsyncClient,
    fx: Fixture,
    kind: str,
    tasks: list[int],
    *,
    first: int,
    count: int,
    in_flight: int,
) -> tuple[list[float], Counter[str]]:
    """`count` requests of `kind`, `in_flight` at a time (each lane sends its next request
    when its previous one is answered); their latencies in ms and the errors."""
    indexes = iter(range(first, first + count))  # shared by the lanes: each takes the next
    latencies: list[float] = []
    errors: Counter[str] = Counter()

    async def lane() -> None:
        for index in indexes:
            began = time.perf_counter()
            try:
                if kind == "post":
                    task = tasks[index % len(tasks)]
                    response = await client.post(
                        f"/api/tasks/{task}/tabs/", json={}, headers=fx.headers(index)
                    )
                else:
                    response = await client.get("/bench/noop/", headers=fx.headers(index))
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] += 1
                continue
            elapsed = (time.perf_counter() - began) * 1000
            if response.status_code != (201 if kind == "post" else 200):
                errors[f"HTTP {response.status_code}"] += 1
            else:
                latencies.append(elapsed)

    await asyncio.gather(*(lane() for _ in range(max(1, in_flight))))
    return latencies, errors


async def cpu_per_request(
    fx: Fixture, cfg: Config, tasks: list[int], pids: list[int]
) -> dict[str, Any]:
    rounds = max(1, cfg.cpu_rounds)
    sizes = [
        cfg.cpu_requests // rounds + (1 if r < cfg.cpu_requests % rounds else 0)
        for r in range(rounds)
    ]
    async with make_client(fx.base_url) as client:
        sent = dict.fromkeys(KINDS, 0)  # next request index per kind: members take turns
        for kind in KINDS:  # unmeasured: connections open, first-request caches filled
            await closed_loop(
                client, fx, kind, tasks, first=0, count=cfg.cpu_warmup, in_flight=cfg.cpu_in_flight
            )
            sent[kind] = cfg.cpu_warmup
        await asyncio.sleep(cfg.cpu_settle)
        idle = await idle_rate(pids, cfg.cpu_idle_seconds)
        chunks: list[dict[str, Any]] = []
        for n, size in enumerate(sizes):
            for kind in KINDS if n % 2 == 0 else KINDS[::-1]:
                cpu_before, began = cpu_seconds(pids), time.monotonic()
                latencies, errors = await closed_loop(
                    client,
                    fx,
                    kind,
                    tasks,
                    first=sent[kind],
                    count=size,
                    in_flight=cfg.cpu_in_flight,
                )
                busy = time.monotonic() - began
                await asyncio.sleep(cfg.cpu_settle)
                window = time.monotonic() - began
                cpu = cpu_seconds(pids) - cpu_before
                sent[kind] += size
                chunks.append(
                    {
                        "kind": kind,
                        "round": n,
                        "requests": size,
                        "cpu_s": cpu,
                        "busy_s": busy,
                        "window_s": window,
                        "latencies": latencies,
                        "errors": dict(errors),
                    }
                )
    out: dict[str, Any] = {"idle_cpu_ms_per_s": idle * 1000}
    for kind in KINDS:
        mine = [c for c in chunks if c["kind"] == kind]
        requests = sum(c["requests"] for c in mine)
        cpu = sum(c["cpu_s"] for c in mine)
        busy = sum(c["busy_s"] for c in mine)
        failed: Counter[str] = Counter()
        for chunk in mine:
            failed.update(chunk["errors"])
        per_chunk = [c["cpu_s"] * 1000 / c["requests"] for c in mine if c["requests"]]
        out[kind] = {
            "requests": requests,
            "errors": dict(failed),
            "cpu_s": cpu,
            "window_s": sum(c["window_s"] for c in mine),
            "cpu_ms_per_request": cpu * 1000 / requests if requests else math.nan,
            "cpu_ms_per_request_chunks": per_chunk,
            "cpu_share_of_a_core": cpu / busy if busy else math.nan,  # near 1: CPU-bound
            "requests_per_s": requests / busy if busy else math.nan,
            "wall": stats([v for c in mine for v in c["latencies"]]),
        }
    trivial = out["trivial"]["cpu_ms_per_request"]
    out["ratio"] = out["post"]["cpu_ms_per_request"] / trivial if trivial > 0 else math.nan
    out["wall_p50_ratio"] = (
        out["post"]["wall"]["p50"] / out["trivial"]["wall"]["p50"]
        if out["trivial"]["wall"]["p50"]
        else math.nan
    )
    return out


# -- 1. concurrent opens ---------------------------------------------------------------------


def bursts(stack: Stack, fx: Fixture, cfg: Config, pids: list[int], log: Log) -> dict[str, Any]:
    from bench.scenarios import new_tasks, noop_phase, tab_phase, wait_for_tabs, warm_workers

    stack.start_workers(delay=0.0)
    warm_workers(fx, cfg)  # a fresh pool's first tasks cost seconds of CPU: not in a burst
    rounds: list[dict[str, Any]] = []
    latencies: list[float] = []
    floor: list[float] = []
    errors: Counter[str] = Counter()
    for n in range(max(1, cfg.cpu_burst_rounds)):
        (task,) = new_tasks(fx, 1, f"post_cpu burst {n}")
        # The floor: as many trivial requests, sent the same way, just before.
        trivial = asyncio.run(
            noop_phase(fx, rate=BURST_RATE, seconds=cfg.cpu_burst_tabs / BURST_RATE)
        )
        floor += trivial.latencies_ms()
        errors.update({f"trivial {e}": k for e, k in trivial.errors.items()})
        time.sleep(0.25)
        cpu_before = cpu_seconds(pids)
        run = asyncio.run(tab_phase(fx, [task], rate=BURST_RATE, count=cfg.cpu_burst_tabs))
        cpu = cpu_seconds(pids) - cpu_before
        ready, pending = wait_for_tabs({"task_id": task}, cfg.ready_timeout)
        summary, base = run.summary(), trivial.summary()
        latencies += run.latencies_ms()
        errors.update(run.errors)
        rounds.append(
            {
                "sent": summary["sent"],
                "ok": summary["ok"],
                "errors": summary["errors"],
                "p50": summary["p50"],
                "p99": summary["p99"],
                "max": summary["max"],
                "elapsed_s": run.elapsed,
                # Daphne's CPU from the first send to the last response (the workers' first
                # events of the task reach its fan-out meanwhile), per POST.
                "cpu_ms_per_post": cpu * 1000 / max(1, summary["sent"]),
                "trivial": {key: base[key] for key in ("sent", "ok", "p50", "p99", "max")},
                "ready": ready,
                "pending": pending,
            }
        )
        log(
            f"   burst {n + 1}: {summary['ok']}/{summary['sent']} ok, p50 {summary['p50']:.1f} "
            f"p99 {summary['p99']:.1f} max {summary['max']:.1f} ms (trivial p50 "
            f"{base['p50']:.1f} p99 {base['p99']:.1f} ms); Daphne CPU "
            f"{rounds[-1]['cpu_ms_per_post']:.2f} ms per POST; {ready} ready, {pending} pending"
        )
    stack.stop_workers()
    return {
        "tabs": cfg.cpu_burst_tabs,
        "rate": BURST_RATE,
        "rounds": rounds,
        "errors": dict(errors),
        "post": stats(latencies),
        "trivial": stats(floor),
    }


# -- the scenario ----------------------------------------------------------------------------


def post_cpu(stack: Stack, fx: Fixture, cfg: Config, log: Log) -> dict[str, Any]:
    from bench.scenarios import new_tasks

    pids = stack.daphne_pids()
    # The processes whose CPU is counted (with config.web: its Daphnes and their parent).
    out: dict[str, Any] = {"daphne_processes": len(pids), "web_processes": stack.web_processes}
    out["burst"] = bursts(stack, fx, cfg, pids, log)
    stack.stop_workers()  # only the requests reach Daphne; their messages wait in Redis
    tasks = new_tasks(fx, max(1, cfg.cpu_tasks), "post_cpu")
    time.sleep(0.5)  # the last worker events of the bursts have reached Daphne
    out["cpu"] = asyncio.run(cpu_per_request(fx, cfg, tasks, pids))
    stack.purge_queues()
    if stack.daphne_pids() != pids:
        out["warning"] = "Daphne's processes changed during the scenario"
    cpu, burst = out["cpu"], out["burst"]["post"]
    log(
        f"   Daphne CPU per request: tab POST {cpu['post']['cpu_ms_per_request']:.2f} ms, "
        f"trivial {cpu['trivial']['cpu_ms_per_request']:.2f} ms: x{cpu['ratio']:.2f} (idle "
        f"{cpu['idle_cpu_ms_per_s']:.1f} ms/s); wall p50 "
        f"{cpu['post']['wall']['p50']:.1f} vs {cpu['trivial']['wall']['p50']:.1f} ms; "
        f"{cfg.cpu_burst_tabs} concurrent opens p50 {burst['p50']:.1f} p99 {burst['p99']:.1f} ms"
    )
    return out
