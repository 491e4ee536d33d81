"""Compare channels-redis layers, and two ways of publishing from a worker process.

Starts its own redis-server on a free loopback port, then for each layer
(RedisChannelLayer, RedisPubSubChannelLayer) and each group size (1, 10, 100 subscribers)
sends events through `group_send` from a publisher thread (as a Celery worker does) and
measures send-to-receive latency at every subscriber, plus the cost of one `group_send`.
It also measures one publish through `async_to_sync` per event (a new loop each time)
against one long-lived loop per process (what core.publish does).

    .venv/bin/python bench/channel_layers.py [--events 200] [--write docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

import channels  # noqa: E402
import channels_redis  # noqa: E402
import redis  # noqa: E402
from asgiref.sync import async_to_sync  # noqa: E402
from channels_redis.core import RedisChannelLayer  # noqa: E402
from channels_redis.pubsub import RedisPubSubChannelLayer  # noqa: E402

LAYERS = {
    "RedisChannelLayer": RedisChannelLayer,
    "RedisPubSubChannelLayer": RedisPubSubChannelLayer,
}
SECTION = "## Channel layers"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def redis_server():
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="bench-redis-")
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Publisher:
    """One loop thread and one layer, like core.publish._LoopPublisher."""

    def __init__(self, layer_cls: type, url: str):
        self.layer = layer_cls(hosts=[url])
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def send(self, group: str, message: dict) -> None:
        asyncio.run_coroutine_threadsafe(self.layer.group_send(group, message), self.loop).result(5)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.layer.flush(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)


def measure_latency(layer_cls: type, url: str, subscribers: int, events: int) -> dict:
    group = f"bench.{layer_cls.__name__}.{subscribers}"
    latencies: list[float] = []
    last_subscriber: list[float] = []
    send_costs: list[float] = []
    ready = threading.Event()
    done = threading.Event()

    async def receive_all() -> None:
        layer = layer_cls(hosts=[url])
        names = [await layer.new_channel() for _ in range(subscribers)]
        for name in names:
            await layer.group_add(group, name)
        ready.set()
        arrivals: dict[int, list[float]] = {}

        async def consume(name: str) -> None:
            for _ in range(events):
                message = await layer.receive(name)
                now = time.perf_counter()
                latencies.append(now - message["sent"])
                arrivals.setdefault(message["n"], []).append(now - message["sent"])

        await asyncio.wait_for(asyncio.gather(*(consume(n) for n in names)), timeout=120)
        last_subscriber.extend(max(v) for v in arrivals.values())
        with contextlib.suppress(Exception):
            await layer.flush()
        done.set()

    receiver = threading.Thread(target=lambda: asyncio.run(receive_all()), daemon=True)
    receiver.start()
    ready.wait(30)
    time.sleep(0.2)  # let subscriptions settle before the first message (setup, not a sync)
    publisher = Publisher(layer_cls, url)
    for n in range(events):
        start = time.perf_counter()
        publisher.send(group, {"type": "bench.event", "n": n, "sent": start})
        send_costs.append(time.perf_counter() - start)
        time.sleep(0.002)  # an event stream, not a burst
    done.wait(120)
    publisher.close()
    ms = 1000.0
    return {
        "subscribers": subscribers,
        "received": len(latencies),
        "expected": subscribers * events,
        "p50": pct(latencies, 0.5) * ms,
        "p99": pct(latencies, 0.99) * ms,
        "last_p99": pct(last_subscriber, 0.99) * ms if last_subscriber else float("nan"),
        "send_p50": statistics.median(send_costs) * ms,
    }


def measure_publish_styles(url: str, events: int) -> dict:
    layer_cls = RedisPubSubChannelLayer
    costs_new_loop = []
    for n in range(events):
        layer = layer_cls(hosts=[url])
        start = time.perf_counter()
        async_to_sync(layer.group_send)("bench.styles", {"type": "x", "n": n})
        costs_new_loop.append(time.perf_counter() - start)
    publisher = Publisher(layer_cls, url)
    costs_loop = []
    for n in range(events):
        start = time.perf_counter()
        publisher.send("bench.styles", {"type": "x", "n": n})
        costs_loop.append(time.perf_counter() - start)
    publisher.close()
    return {
        "new_loop_p50": statistics.median(costs_new_loop) * 1000,
        "long_lived_p50": statistics.median(costs_loop) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--sizes", default="1,10,100")
    parser.add_argument("--write", default="", help="update this Markdown file's section")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    with redis_server() as url:
        for name, layer_cls in LAYERS.items():
            for size in sizes:
                result = measure_latency(layer_cls, url, size, args.events)
                rows.append((name, result))
                print(
                    f"{name:24} subscribers={size:4} received={result['received']}/"
                    f"{result['expected']} p50={result['p50']:.2f}ms p99={result['p99']:.2f}ms "
                    f"last-subscriber p99={result['last_p99']:.2f}ms "
                    f"group_send p50={result['send_p50']:.2f}ms"
                )
        styles = measure_publish_styles(url, min(args.events, 200))
    print(
        f"publish via async_to_sync per event: p50 {styles['new_loop_p50']:.2f} ms; "
        f"via one long-lived loop: p50 {styles['long_lived_p50']:.2f} ms"
    )
    if args.write:
        write_markdown(Path(args.write), rows, styles, args.events)


def write_markdown(path: Path, rows: list, styles: dict, events: int) -> None:
    lines = [
        SECTION,
        "",
        f"`bench/channel_layers.py --events {events}`: a publisher thread with its own loop "
        "(as in a Celery worker) sends events to a group whose subscribers share one "
        "receiving process (as in one Daphne); latency is send-to-receive at each subscriber.",
        f"Machine: {os.cpu_count()} cores, {platform.platform()}, Python "
        f"{platform.python_version()}, channels {channels.__version__}, channels-redis "
        f"{channels_redis.__version__}, {time.strftime('%Y-%m-%d')}.",
        "",
        "| layer | subscribers | delivered | p50 ms | p99 ms | last subscriber p99 ms "
        "| group_send p50 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        lines.append(
            f"| {name} | {r['subscribers']} | {r['received']}/{r['expected']} | "
            f"{r['p50']:.2f} | {r['p99']:.2f} | {r['last_p99']:.2f} | "
            f"{r['send_p50']:.2f} |"
        )
    lines += [
        "",
        f"Publishing from a worker: `async_to_sync(group_send)` per event (new loop and "
        f"connection each time) p50 **{styles['new_loop_p50']:.2f} ms**; one long-lived loop "
        f"per process p50 **{styles['long_lived_p50']:.2f} ms**.",
        "",
        f"Choice: **{best(rows)}** has the lower median latency summed over the group sizes, "
        "so it is the default (`WORKBENCH_CHANNEL_LAYER`); workers publish through one "
        "long-lived loop per process (`core/publish.py`).",
        "",
    ]
    replace_section(path, SECTION, "\n".join(lines))


def best(rows: list) -> str:
    totals: dict[str, float] = {}
    for name, result in rows:
        totals[name] = totals.get(name, 0.0) + result["p50"]
    return min(totals, key=totals.get)


def replace_section(path: Path, heading: str, body: str) -> None:
    """Replace the `## heading` section of a Markdown file (or append it)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    start = text.find(heading + "\n")
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + body
    else:
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + body + (text[end + 1 :] if end != -1 else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n")


if __name__ == "__main__":
    main()
