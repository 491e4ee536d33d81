"""An open-loop load generator (asyncio + httpx) and the statistics the benchmark reports.

Open loop: request i is sent at t0 + i / rate whatever happened to earlier ones, so a slow
server meets the same arrivals a real one would (no coordinated omission). Latency runs from
the scheduled send time to the end of the response; every request is counted, and errors
(a status other than the expected one, a timeout, a refused connection) are reported.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class Sample:
    index: int
    scheduled: float  # loop clock
    sent_wall: float  # time.time() when the request left, to compare with database stamps
    latency: float = math.nan  # seconds, scheduled send -> response read
    status: int | None = None
    error: str = ""
    body: Any = None


@dataclass
class Run:
    """The outcome of one open-loop phase."""

    rate: float
    duration: float
    samples: list[Sample] = field(default_factory=list)
    lag_max: float = 0.0  # worst delay of a send behind its schedule (generator health)
    elapsed: float = 0.0  # first scheduled send -> last response

    @property
    def ok(self) -> list[Sample]:
        return [s for s in self.samples if not s.error]

    @property
    def errors(self) -> Counter[str]:
        return Counter(s.error for s in self.samples if s.error)

    def latencies_ms(self) -> list[float]:
        return [s.latency * 1000 for s in self.ok]

    def summary(self) -> dict[str, Any]:
        values = self.latencies_ms()
        return {
            "rate": self.rate,
            "duration": self.duration,
            "sent": len(self.samples),
            "ok": len(values),
            "errors": dict(self.errors),
            "throughput": len(values) / self.elapsed if self.elapsed else 0.0,
            "lag_max_ms": self.lag_max * 1000,
            **stats(values),
        }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def stats(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 0.50),
        "p99": percentile(values, 0.99),
        "max": max(values) if values else math.nan,
        "mean": sum(values) / len(values) if values else math.nan,
    }


Send = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]


def make_client(base_url: str, *, timeout: float = 30.0) -> httpx.AsyncClient:
    # Enough pooled connections that a slow phase never queues requests in the client.
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
    return httpx.AsyncClient(base_url=base_url, timeout=timeout, limits=limits)


async def open_loop(
    client: httpx.AsyncClient,
    send: Send,
    *,
    rate: float,
    duration: float | None = None,
    count: int | None = None,
    expect: int = 200,
    keep_body: bool = False,
) -> Run:
    """Send `count` (or rate * duration) requests on a fixed schedule; wait for them all."""
    total = count if count is not None else max(1, round(rate * (duration or 0)))
    run = Run(rate=rate, duration=total / rate)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05

    async def one(sample: Sample) -> None:
        try:
            response = await send(client, sample.index)
        except httpx.TimeoutException:
            sample.error = "timeout"
        except httpx.HTTPError as exc:
            sample.error = type(exc).__name__
        else:
            sample.status = response.status_code
            if response.status_code != expect:
                sample.error = f"HTTP {response.status_code}"
            elif keep_body:
                sample.body = response.json()
        sample.latency = loop.time() - sample.scheduled

    tasks = []
    for index in range(total):
        scheduled = start + index / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        run.lag_max = max(run.lag_max, loop.time() - scheduled)
        sample = Sample(index=index, scheduled=scheduled, sent_wall=time.time())
        run.samples.append(sample)
        tasks.append(asyncio.create_task(one(sample)))
    await asyncio.gather(*tasks)
    run.elapsed = max(s.scheduled + s.latency for s in run.samples) - start
    return run
