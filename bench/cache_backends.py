"""Compare Redis cache backends on the throttle's path: django-redis (what the service uses:
its connection pools are per process) and Django's own RedisCache (one pool per thread).
Until 2026-12-02 the service had its own SharedRedisCache (Django's RedisCache sharing one
client per process, on Django's private attributes); docs/benchmarks.md has the run that
retired it, made with this script at commit 1236c64 where that class still exists.

Starts its own redis-server on a free loopback port. Each "request" is one throttle hit:
the sliding-window Lua script in one round trip, as `core.throttles` runs it. Requests run
on a fixed pool of reused threads (what `config/handlers.py` gives every request) and, for
contrast, on a fresh thread each (what Django's stock ASGI handler did). Reports, per
backend: hits per second, the p50/p99 of one hit, process CPU per hit, and the Redis
connections opened.

    .venv/bin/python bench/cache_backends.py [--hits 4000] [--threads 8] [--write FILE]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

import redis  # noqa: E402
from django.core.cache import CacheHandler  # noqa: E402

from bench.channel_layers import pct, redis_server, replace_section  # noqa: E402
from core.throttles import SLIDING_WINDOW  # noqa: E402

SECTION = "## Cache backends (the throttle's Redis path)"
POOL = {"max_connections": 64, "timeout": 5}


def configs(url: str) -> dict[str, dict[str, Any]]:
    return {
        "django-redis": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": url,
            "OPTIONS": {
                "CONNECTION_POOL_CLASS": "redis.BlockingConnectionPool",
                "CONNECTION_POOL_KWARGS": POOL,
            },
        },
        "Django's RedisCache": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
        },
    }


_scripts: dict[int, Any] = {}


def hit(cache: Any, key: str) -> None:
    """One throttle hit on `cache`, the same Lua script whichever backend holds the client."""
    # Not core.throttles.sliding_window_hit: it counts an unreachable Redis as allowed, and a
    # failed hit must not pass for a fast one here. The same script, the same one round trip.
    if hasattr(cache, "client"):  # django-redis, as core.throttles gets its client
        client = cache.client.get_client(write=True)
    else:  # Django's RedisCache
        client = cache._cache.get_client(key, write=True)
    script = _scripts.get(id(client))
    if script is None:
        script = _scripts[id(client)] = client.register_script(SLIDING_WINDOW)
    script(
        keys=[cache.make_and_validate_key(f"{key}:window")],
        args=[repr(time.time()), "60.0", 10**9, uuid.uuid4().hex],
    )


def connections_received(url: str) -> int:
    return int(redis.Redis.from_url(url).info("stats")["total_connections_received"])


def run(url: str, config: dict[str, Any], *, hits: int, threads: int, fresh: bool) -> dict:
    handler = CacheHandler({"default": config})  # per thread, as django.core.cache.caches
    timings: list[float] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        cache = handler["default"]
        start = time.perf_counter()
        hit(cache, f"throttle_user_{i % 40}")
        elapsed = time.perf_counter() - start
        with lock:
            timings.append(elapsed)

    hit(handler["default"], "warm")  # script loading and the first connection, not timed
    before = connections_received(url)
    cpu, wall = time.process_time(), time.perf_counter()
    if fresh:
        for start in range(0, hits, threads):
            batch = [
                threading.Thread(target=one, args=(i,))
                for i in range(start, min(hits, start + threads))
            ]
            for thread in batch:
                thread.start()
            for thread in batch:
                thread.join()
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, range(hits)))
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    opened = connections_received(url) - before
    # Django's RedisCache on fresh threads leaves a connection per thread open (10,000 of
    # them refuse every new client: "max number of clients reached"); drop them all.
    redis.Redis.from_url(url).client_kill_filter(_type="normal", skipme=True)
    return {
        "rate": hits / wall,
        "p50": pct(timings, 0.5) * 1000,
        "p99": pct(timings, 0.99) * 1000,
        "cpu_us": cpu / hits * 1e6,
        "connections": opened,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hits", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs per backend")
    parser.add_argument("--write", default="", help="a Markdown file to put the section in")
    args = parser.parse_args()
    results: dict[tuple[str, str], list[dict]] = {}
    with redis_server() as url:
        for _ in range(args.rounds):  # alternating, so a noisy moment hits every backend
            for fresh in (False, True):
                for name, config in configs(url).items():
                    result = run(url, config, hits=args.hits, threads=args.threads, fresh=fresh)
                    model = "a fresh thread per request" if fresh else "reused threads"
                    results.setdefault((model, name), []).append(result)
                    print(model, name, {k: round(v, 2) for k, v in result.items()}, flush=True)
    lines = [
        SECTION,
        "",
        f"`bench/cache_backends.py --hits {args.hits} --threads {args.threads} "
        f"--rounds {args.rounds}` on {time.strftime('%Y-%m-%d')}, Python "
        f"{platform.python_version()}, redis-py {redis.__version__}: one throttle hit (the "
        "sliding-window script, one round trip) per request, requests on "
        f"{args.threads} threads; medians of the rounds.",
        "",
        "| threads | backend | hits/s | hit p50 ms | hit p99 ms | CPU per hit µs "
        "| Redis connections opened |",
        "|---|---|---|---|---|---|---|",
    ]
    for (model, name), runs in results.items():

        def median(field: str, runs: list[dict] = runs) -> float:
            return sorted(r[field] for r in runs)[len(runs) // 2]

        lines.append(
            f"| {model} | {name} | {median('rate'):.0f} | {median('p50'):.2f} | "
            f"{median('p99'):.2f} | {median('cpu_us'):.0f} | {median('connections'):.0f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        replace_section(Path(args.write), SECTION, text)


if __name__ == "__main__":
    main()
