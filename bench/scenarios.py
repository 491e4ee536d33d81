"""The benchmark's scenarios. They run in bench/service.py's child process, with Django set
up against the same database and Redis as the services under test.

Times compared across processes (a POST's send time, a row's created_at or ready_at, a Celery
task's start, a websocket frame's arrival) are all wall-clock times of the one machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench import instrument
from bench.loadgen import Run, make_client, open_loop, stats

if TYPE_CHECKING:
    import httpx

    from bench.service import Config
    from bench.stack import Stack

Log = Callable[[str], None]
PENDING = ("pending_provision", "pending_session_create")


# -- fixture ---------------------------------------------------------------------------------


@dataclass
class Fixture:
    base_url: str
    ws_url: str
    redis_url: str
    tokens: list[str]
    user_ids: list[int]
    workspace_id: int  # every user is a member; most load goes here
    stream_workspace_id: int  # user 0 only; few tabs, so websocket snapshots stay small

    def headers(self, index: int) -> dict[str, str]:
        return {"Authorization": f"Token {self.tokens[index % len(self.tokens)]}"}

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)


def make_fixture(stack: Stack, users: int) -> Fixture:
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from core import services as core_services

    user_model = get_user_model()
    # No password: hashing one costs ~100 ms each and the benchmark uses tokens.
    members = [user_model.objects.create_user(username=f"bench{i}") for i in range(users)]
    tokens = [Token.objects.create(user=user).key for user in members]
    workspace = core_services.workspace_create(user=members[0], name="Bench")
    for user in members[1:]:
        core_services.membership_add(workspace_id=workspace.pk, user=user)
    stream = core_services.workspace_create(user=members[0], name="Bench stream")
    assert stack.daphne is not None and stack.redis is not None
    return Fixture(
        base_url=stack.daphne.url,
        ws_url=stack.daphne.ws_url,
        redis_url=stack.redis.url,
        tokens=tokens,
        user_ids=[user.pk for user in members],
        workspace_id=workspace.pk,
        stream_workspace_id=stream.pk,
    )


def new_tasks(fx: Fixture, count: int, title: str, *, workspace_id: int | None = None) -> list[int]:
    from django.contrib.auth import get_user_model

    from tasks_app import services as task_services

    owner = get_user_model().objects.get(pk=fx.user_ids[0])
    return [
        task_services.task_create(
            workspace_id=workspace_id or fx.workspace_id, user=owner, title=f"{title} {n}"
        ).pk
        for n in range(count)
    ]


# -- helpers ---------------------------------------------------------------------------------


async def tab_phase(
    fx: Fixture,
    tasks: list[int],
    *,
    rate: float,
    seconds: float | None = None,
    count: int | None = None,
    path: str = "/api/tasks/{}/tabs/",
    timeout: float = 30.0,
    keep_body: bool = False,
    users: int | None = None,
) -> Run:
    """Open tabs on a fixed schedule, round-robin over `tasks` and the fixture's users."""
    async with make_client(fx.base_url, timeout=timeout) as client:

        async def send(http: httpx.AsyncClient, index: int) -> httpx.Response:
            who = index % users if users else index
            return await http.post(
                path.format(tasks[index % len(tasks)]), json={}, headers=fx.headers(who)
            )

        return await open_loop(
            client, send, rate=rate, duration=seconds, count=count, expect=201, keep_body=keep_body
        )


async def noop_phase(fx: Fixture, *, rate: float, seconds: float) -> Run:
    """The trivial authenticated DRF endpoint at the same rate: the stack's floor."""
    async with make_client(fx.base_url) as client:

        async def send(http: httpx.AsyncClient, index: int) -> httpx.Response:
            return await http.get("/bench/noop/", headers=fx.headers(index))

        return await open_loop(client, send, rate=rate, duration=seconds, expect=200)


def wait_for_tabs(tab_filter: dict[str, Any], timeout: float) -> tuple[int, int]:
    """Wait until no tab matching `tab_filter` is pending; (finished, still pending)."""
    from django.db import close_old_connections

    from workbench.models import WorkbenchTab

    deadline = time.monotonic() + timeout
    while True:
        tabs = WorkbenchTab.objects.filter(**tab_filter)
        pending = tabs.filter(state__in=PENDING).count()
        if pending == 0 or time.monotonic() > deadline:
            close_old_connections()
            return tabs.count() - pending, pending
        time.sleep(0.05)


def clear_instrument(fx: Fixture) -> None:
    with fx.redis() as client:
        client.delete(instrument.TASKS_KEY, instrument.SESSIONS_KEY)


def instrument_rows(fx: Fixture, key: str) -> list[dict[str, Any]]:
    with fx.redis() as client:
        return [json.loads(raw) for raw in client.lrange(key, 0, -1)]


def celery_waits(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Enqueue-to-start per task name, first deliveries only (a retry's countdown is a
    deliberate wait, not queueing)."""
    by_name: dict[str, list[float]] = {}
    for row in rows:
        if row["retries"] or row["sent"] is None or row["eta"]:
            continue
        name = row["task"].rsplit(".", 1)[-1]
        by_name.setdefault(name, []).append((row["started"] - row["sent"]) * 1000)
    return {name: stats(values) for name, values in sorted(by_name.items())}


class BusySampler(threading.Thread):
    """Counts worker slots inside a `simulated_delay` step, every 0.25 s: proof that every
    worker is busy provisioning while the tab-creation latency is measured."""

    def __init__(self, delay: float) -> None:
        super().__init__(daemon=True)
        self.delay = delay
        self.samples: list[int] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        from django.db import connection
        from django.utils.timezone import now

        from sandboxes.models import ProvisioningStep

        try:
            while not self._stop_event.wait(0.25):
                recent = now() - timedelta(seconds=self.delay + 1)
                self.samples.append(
                    ProvisioningStep.objects.filter(
                        name="simulated_delay", finished_at__isnull=True, started_at__gte=recent
                    ).count()
                )
        finally:
            connection.close()

    def stop(self) -> dict[str, Any]:
        self._stop_event.set()
        self.join()
        if not self.samples:
            return {"min": None, "mean": None, "samples": 0}
        return {
            "min": min(self.samples),
            "mean": sum(self.samples) / len(self.samples),
            "samples": len(self.samples),
        }


def ms(seconds: float) -> float:
    return seconds * 1000.0


# -- scenarios -------------------------------------------------------------------------------


SCENARIOS = (
    "tab_latency",
    "inline",
    "websocket",
    "ws_order",
    "orchestration",
    "burst",
    "waiting",
    "sustained",
    "history",
    "workspace_size",
    "post_cpu",
)


def run_all(
    stack: Stack, config: Config, *, log: Log, only: tuple[str, ...] = SCENARIOS
) -> dict[str, Any]:
    fx = make_fixture(stack, config.users)
    log("warming up")
    warm_up(stack, fx)
    out: dict[str, Any] = {}
    if "tab_latency" in only:
        log("1. tab creation, provisioning saturated and slow")
        saturated = tab_latency(stack, fx, config, log, slow=True)
        log("1. tab creation, provisioning instant")
        instant = tab_latency(stack, fx, config, log, slow=False)
        out["tab_latency"] = {"saturated": saturated, "instant": instant}
    if "inline" in only:
        log("2. tab creation, inline variant")
        out["inline"] = inline(stack, fx, config, log)
    if "websocket" in only:
        log("3. websocket fan-out and memory per socket")
        out["websocket"] = websocket(stack, fx, config, log)
    if "ws_order" in only:
        log("3b. websocket event order, concurrent writers in several processes")
        out["ws_order"] = ws_order(stack, fx, config, log)
    if "orchestration" in only:
        log("4. orchestration overhead and Celery wait")
        out["orchestration"] = orchestration(stack, fx, config, log)
    if "burst" in only:
        log(f"6. one task, {config.burst_tabs} concurrent tabs")
        out["burst"] = burst(stack, fx, config, log)
    if "waiting" in only:
        log(f"7. {config.waiting_tabs} tabs waiting on a {config.waiting_delay:.0f} s provisioning")
        out["waiting"] = waiting(stack, fx, config, log)
    if "sustained" in only:
        log("5. sustained tab creations")
        out["sustained"] = sustained(stack, fx, config, log)
    if "history" in only:
        log(f"8. tab POST with {config.history_tabs} closed tabs on the task and the user")
        out["history"] = history(stack, fx, config, log)
    if "workspace_size" in only:
        from bench.workspace_size import workspace_size

        log(
            f"9. workspaces of {config.size_small_tasks} tasks, {config.size_tasks} tasks and "
            f"{config.size_tab_tasks * config.size_tabs_per_task} open tabs"
        )
        out["workspace_size"] = workspace_size(stack, fx, config, log)
    if "post_cpu" in only:
        from bench.post_cpu import post_cpu

        log(
            f"10. Daphne CPU per tab POST vs the trivial endpoint; {config.cpu_burst_tabs} "
            "concurrent opens of one task"
        )
        out["post_cpu"] = post_cpu(stack, fx, config, log)
    if "web_tier" in only:  # not in SCENARIOS: only when asked for (it restarts the tier)
        from bench.web_tier import web_tier

        log(f"11. {config.cpu_burst_tabs} concurrent opens at 1 vs 2 web processes, alternating")
        out["web_tier"] = web_tier(stack, fx, config, log)
    if "burst_floor" in only:  # not in SCENARIOS: only when asked for (it needs `ab`)
        from bench.burst_floor import burst_floor

        log(
            f"12. {config.cpu_burst_tabs} trivial GETs and as many tab opens at once, sent by "
            "httpx and by ApacheBench"
        )
        out["burst_floor"] = burst_floor(stack, fx, config, log)
    return out


def warm_up(stack: Stack, fx: Fixture) -> None:
    """Import everything and open the first connections before anything is measured."""
    tasks = new_tasks(fx, 1, "warm-up")
    asyncio.run(noop_phase(fx, rate=20, seconds=0.5))
    asyncio.run(tab_phase(fx, tasks, rate=20, count=10))
    stack.purge_queues()


def warm_workers(fx: Fixture, cfg: Config) -> None:
    """Carry a few tabs to ready on fresh workers before measuring them: a worker's boot
    (Django set-up in each pool process, the first imports of each step's code) costs
    several CPU seconds, which would otherwise land on the first step of a ladder."""
    tasks = new_tasks(fx, 2, "warm-up workers")
    asyncio.run(tab_phase(fx, tasks, rate=20, count=10))
    wait_for_tabs({"task_id__in": tasks}, cfg.ready_timeout)


def tab_latency(stack: Stack, fx: Fixture, cfg: Config, log: Log, *, slow: bool) -> dict:
    """Tab creation at each rate, next to the trivial endpoint at the same rate.

    Every measured tab opens on a fresh task, so its chain is a provisioning run of its own.
    slow: the worker's provider spends `slow_delay` s in each run, so both worker slots
    stay inside multi-second provisioning for the whole phase (sampled), and the queue
    grows. instant: no delay; the worker provisions (git init, a sandbox-agent server) and
    opens sessions for real while the requests arrive, on the same 2 cores.
    """
    delay = cfg.slow_delay if slow else 0.0
    stack.start_workers(delay=delay)
    slots = stack.provision_slots
    clear_instrument(fx)
    if slow:
        prime = new_tasks(fx, slots, "saturate")
        asyncio.run(tab_phase(fx, prime, rate=50, count=len(prime)))
        sampler = BusySampler(delay)
        sampler.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not sampler.samples or sampler.samples[-1] < slots):
            time.sleep(0.05)
        sampler.stop()
    phases = []
    for rate, seconds in cfg.rates:
        tasks = new_tasks(fx, max(1, round(rate * seconds)), f"latency {rate}/s")
        sampler = BusySampler(cfg.slow_delay)
        sampler.start()
        floor = asyncio.run(noop_phase(fx, rate=rate, seconds=seconds / 2))
        run = asyncio.run(tab_phase(fx, tasks, rate=rate, seconds=seconds))
        busy = sampler.stop()
        from workbench.models import WorkbenchTab

        phase_tabs = WorkbenchTab.objects.filter(task_id__in=tasks)
        tab, base = run.summary(), floor.summary()
        phases.append(
            {
                "rate": rate,
                "tabs": tab,
                "floor": base,
                "ratio_p50": tab["p50"] / base["p50"] if base["p50"] else math.nan,
                "ratio_p99": tab["p99"] / base["p99"] if base["p99"] else math.nan,
                "busy_slots": busy,
                "ready_at_end": phase_tabs.filter(state="ready").count(),
                "pending_at_end": phase_tabs.filter(state__in=PENDING).count(),
            }
        )
        log(
            f"   {rate:>4g}/s  tabs p50 {tab['p50']:.1f} p99 {tab['p99']:.1f} max "
            f"{tab['max']:.1f} ms ({tab['ok']}/{tab['sent']} ok); floor p50 {base['p50']:.1f} "
            f"p99 {base['p99']:.1f} ms; busy slots min {busy['min']}"
        )
    waits = celery_waits(instrument_rows(fx, instrument.TASKS_KEY))
    stack.stop_workers()
    return {"delay": delay, "provision_slots": slots, "phases": phases, "celery": waits}


def inline(stack: Stack, fx: Fixture, cfg: Config, log: Log) -> dict:
    """The inline variant: provisioning (slow, like the saturated run) and the session are
    done inside the request, each tab on a fresh task as in the asynchronous runs. No worker
    runs, so nothing else competes for the CPU."""
    stack.stop_workers()
    phases = []
    for rate, seconds in cfg.inline_rates:
        tasks = new_tasks(fx, max(1, round(rate * seconds)), f"inline {rate}/s")
        run = asyncio.run(
            tab_phase(
                fx,
                tasks,
                rate=rate,
                seconds=seconds,
                path="/bench/inline/tasks/{}/tabs/",
                timeout=300,
                keep_body=True,
            )
        )
        summary = run.summary()
        summary["ready"] = sum(1 for s in run.ok if s.body and s.body.get("state") == "ready")
        phases.append({"rate": rate, "tabs": summary})
        log(
            f"   {rate:>4g}/s  inline p50 {summary['p50']:.0f} p99 {summary['p99']:.0f} ms "
            f"({summary['ok']}/{summary['sent']} ok, {summary['ready']} ready)"
        )
        stack.stop_workers()  # drop the chains tab_create dispatched; destroy the sandboxes
    return {"delay": cfg.slow_delay, "phases": phases}


# -- websockets ------------------------------------------------------------------------------


class WsClient:
    """One websocket that records every frame with its arrival time (parsed later, so the
    client spends as little as possible between frames)."""

    def __init__(self, ws: ClientConnection, snapshot_seq: int | None = None) -> None:
        self.ws = ws
        self.snapshot_seq = snapshot_seq
        self.frames: list[tuple[float, bytes]] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                data = await self.ws.recv(decode=False)
                self.frames.append((time.time(), data))
        except ConnectionClosed:
            pass

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()


async def open_clients(url: str, token: str, count: int, *, batch: int = 50) -> list[WsClient]:
    async def one() -> WsClient:
        ws = await connect(
            url,
            additional_headers={"Authorization": f"Token {token}"},
            compression=None,
            max_size=None,
            open_timeout=60,
            ping_interval=None,
            close_timeout=2,
        )
        snapshot = json.loads(await ws.recv(decode=False))
        return WsClient(ws, snapshot.get("seq"))

    clients: list[WsClient] = []
    for start in range(0, count, batch):
        clients += await asyncio.gather(*(one() for _ in range(min(batch, count - start))))
    return clients


async def close_clients(clients: list[WsClient], *, batch: int = 100) -> None:
    for start in range(0, len(clients), batch):
        await asyncio.gather(*(c.close() for c in clients[start : start + batch]))


def event_times(workspace_id: int, seqs: list[int]) -> dict[int, float]:
    """created_at of the Event rows: written in the change's transaction, just before it
    commits (the stand-in for the commit time)."""
    from django.db import close_old_connections

    from core.models import Event

    rows = Event.objects.filter(workspace_id=workspace_id, seq__in=seqs)
    times = {event.seq: event.created_at.timestamp() for event in rows}
    close_old_connections()
    return times


def tab_events(
    clients: list[WsClient], tab_ids: set[str], *, state: str | None = None
) -> list[tuple[int, str, int, float]]:
    """(client index, tab id, seq, arrival) of each `tab.updated` frame for these tabs."""
    found = []
    for index, client in enumerate(clients):
        for arrived, raw in client.frames:
            frame = json.loads(raw)
            if frame.get("type") != "event" or frame.get("event") != "tab.updated":
                continue
            data = frame.get("data") or {}
            if data.get("id") in tab_ids and (state is None or data.get("state") == state):
                found.append((index, data["id"], frame["seq"], arrived))
    return found


def websocket(stack: Stack, fx: Fixture, cfg: Config, log: Log) -> dict:
    """Commit-to-client latency of a tab event, for each number of connected clients.

    The event is the placeholder `tab.updated` a POST /api/tasks/{id}/tabs/ commits (in the
    request thread of Daphne, published to Redis after commit). No worker runs, so these are
    the only events. Daphne is restarted first, so memory per socket is measured on a fresh
    process: VmRSS after opening the sockets minus before, divided by their number.
    """
    stack.stop_workers()
    assert stack.daphne is not None
    stack.daphne.restart()
    return asyncio.run(_websocket(stack, fx, cfg, log))


async def _websocket(stack: Stack, fx: Fixture, cfg: Config, log: Log) -> dict:
    assert stack.daphne is not None
    workspace = fx.stream_workspace_id
    (task,) = await asyncio.to_thread(new_tasks, fx, 1, "stream", workspace_id=workspace)
    url = f"{fx.ws_url}/ws/workspaces/{workspace}/"
    # Warm the websocket path (imports, first connections) before measuring memory.
    warm = await open_clients(url, fx.tokens[0], 2)
    await tab_phase(fx, [task], rate=10, count=2, users=1)
    await close_clients(warm)
    await asyncio.sleep(0.5)
    largest = max(cfg.ws_sizes)
    rss_before = sum(stack.rss_kib(pid) for pid in stack.daphne_pids())
    started = time.monotonic()
    clients = await open_clients(url, fx.tokens[0], largest)
    connect_seconds = time.monotonic() - started
    await asyncio.sleep(1.0)
    rss_after = sum(stack.rss_kib(pid) for pid in stack.daphne_pids())
    memory = {
        "sockets": largest,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "per_socket_kib": (rss_after - rss_before) / largest,
        "connect_seconds": connect_seconds,
    }
    log(
        f"   {largest} sockets opened in {connect_seconds:.1f} s; Daphne RSS "
        f"{rss_before / 1024:.1f} -> {rss_after / 1024:.1f} MiB "
        f"({memory['per_socket_kib']:.1f} KiB per socket)"
    )
    sizes = []
    for size in sorted(cfg.ws_sizes, reverse=True):
        await close_clients(clients[size:])
        clients = clients[:size]
        await asyncio.sleep(0.5)
        for client in clients:
            client.frames.clear()
        rate = cfg.ws_rate_large if size >= 1000 else cfg.ws_rate
        run = await tab_phase(fx, [task], rate=rate, count=cfg.ws_events, keep_body=True, users=1)
        posted = {s.body["id"]: s.sent_wall for s in run.ok}
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(len(c.frames) < len(posted) for c in clients):
            await asyncio.sleep(0.05)
        arrivals = tab_events(clients, set(posted))
        created = await asyncio.to_thread(
            event_times, workspace, sorted({seq for _, _, seq, _ in arrivals})
        )
        commit = [ms(t - created[seq]) for _, _, seq, t in arrivals if seq in created]
        from_post = [ms(t - posted[tab]) for _, tab, _, t in arrivals]
        last: dict[int, float] = {}
        for _, _, seq, arrived in arrivals:
            last[seq] = max(last.get(seq, 0.0), arrived)
        last_subscriber = [ms(t - created[seq]) for seq, t in last.items() if seq in created]
        result = {
            "clients": size,
            "events": len(posted),
            "rate": rate,
            "delivered": len(arrivals),
            "expected": size * len(posted),
            "post_errors": dict(run.errors),
            "commit_to_client": stats(commit),
            "post_to_client": stats(from_post),
            "last_subscriber": stats(last_subscriber),
        }
        sizes.append(result)
        log(
            f"   {size:>5} clients: commit->client p50 {result['commit_to_client']['p50']:.1f} "
            f"p99 {result['commit_to_client']['p99']:.1f} ms, last subscriber p99 "
            f"{result['last_subscriber']['p99']:.1f} ms, delivered "
            f"{result['delivered']}/{result['expected']}"
        )
    await close_clients(clients)
    stack.purge_queues()
    return {"memory": memory, "sizes": sizes}


# -- event order -----------------------------------------------------------------------------


def ws_order(stack: Stack, fx: Fixture, cfg: Config, log: Log) -> dict:
    """Event order at each client, and commit-to-client latency, with concurrent writers.

    `order_clients` websocket clients on one workspace. Every `order_interval` s, a round of
    `order_writers` bench.touch Celery tasks (one event each, alternating between the
    provisioning pool and the main pool: different worker processes) and `order_patches`
    task renames (PATCH /api/tasks/{id}/, in Daphne's request threads) start at once, so
    their commits come back to back under the workspace lock and their publishers race to
    Redis. Per client, a frame is *out of order* if its seq is neither the highest seen + 1
    nor a duplicate (a swap of two events counts twice); *late* if it is below the highest
    seen (by how long: since that highest arrived). A listener on the channel layer in this
    process records the order the broadcasts arrive in, as a hub receives them.
    """
    stack.start_workers(delay=0.0)
    try:
        return asyncio.run(_ws_order(fx, cfg, log))
    finally:
        stack.stop_workers()


def _current_seq(workspace_id: int) -> int:
    from django.db import close_old_connections

    from core.models import Workspace

    seq = Workspace.objects.values_list("event_seq", flat=True).get(pk=workspace_id)
    close_old_connections()
    return seq


def _touch(workspace_id: int, writers: int) -> None:
    from config.celery import app

    for n in range(writers):
        app.send_task("bench.touch", args=[workspace_id], queue=("provision", "celery")[n % 2])


async def _listen(workspace_id: int, heard: list[tuple[int, float]]) -> None:
    """Record when each event's broadcast reaches a subscriber of the channel layer, as a
    hub's would (but in a process with nothing else to do)."""
    from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers

    from core.publish import group_name

    layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
    channel = await layer.new_channel("bench-listener.")
    await layer.group_add(group_name(workspace_id), channel)
    try:
        while True:
            message = await layer.receive(channel)
            heard.append((message["seq"], time.time()))
    finally:
        with contextlib.suppress(Exception):
            await layer.group_discard(group_name(workspace_id), channel)


def _windows(heard: list[tuple[int, float]]) -> list[float]:
    """For each broadcast that reached the listener after a later seq: by how long (ms)."""
    windows, first_after = [], {}
    for seq, arrived in heard:
        for later, at in first_after.items():
            if later > seq:
                windows.append(ms(arrived - at))
                break
        first_after.setdefault(seq, arrived)
    return windows


async def _settle(workspace_id: int, clients: list[WsClient], timeout: float) -> int:
    """Wait until the log stops growing for 1 s and every client has its last seq."""
    deadline = time.monotonic() + timeout
    seq, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        current = await asyncio.to_thread(_current_seq, workspace_id)
        if current != seq:
            seq, stable_since = current, time.monotonic()
        elif time.monotonic() - stable_since > 1.0 and all(
            c.frames and json.loads(c.frames[-1][1]).get("seq", -1) >= seq for c in clients
        ):
            break
        await asyncio.sleep(0.2)
    return seq


async def _ws_order(fx: Fixture, cfg: Config, log: Log) -> dict:
    workspace = fx.stream_workspace_id
    (task,) = await asyncio.to_thread(new_tasks, fx, 1, "order", workspace_id=workspace)
    url = f"{fx.ws_url}/ws/workspaces/{workspace}/"
    # Warm every worker process (a fresh pool's first task imports Django's app code).
    warm_from = await asyncio.to_thread(_current_seq, workspace)
    await asyncio.to_thread(_touch, workspace, 12)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if await asyncio.to_thread(_current_seq, workspace) >= warm_from + 12:
            break
        await asyncio.sleep(0.1)
    clients = await open_clients(url, fx.tokens[0], cfg.order_clients)
    listener = asyncio.create_task(_listen(workspace, heard := []))
    await asyncio.sleep(0.5)
    started = time.time()
    async with make_client(fx.base_url) as http:
        patches: list[asyncio.Task[httpx.Response]] = []
        for n in range(cfg.order_rounds):
            delay = started + n * cfg.order_interval - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            _touch(workspace, cfg.order_writers)
            patches += [
                asyncio.create_task(
                    http.patch(
                        f"/api/tasks/{task}/",
                        json={"title": f"order {n}.{k}"},
                        headers=fx.headers(0),
                    )
                )
                for k in range(cfg.order_patches)
            ]
        responses = await asyncio.gather(*patches, return_exceptions=True)
    patch_errors = sum(1 for r in responses if isinstance(r, BaseException) or r.status_code != 200)
    last_seq = await _settle(workspace, clients, 30.0)
    listener.cancel()
    out_of_order, late, duplicates, missing = [], [], 0, 0
    lateness: list[float] = []
    arrivals: list[tuple[int, float]] = []
    for client in clients:
        seen: set[int] = set()
        top = client.snapshot_seq or 0
        top_arrived = 0.0
        wrong = 0
        for arrived, raw in client.frames:
            frame = json.loads(raw)
            if frame.get("type") != "event":
                continue
            seq = frame["seq"]
            if seq in seen or seq <= (client.snapshot_seq or 0):
                duplicates += 1
                continue
            seen.add(seq)
            arrivals.append((seq, arrived))
            if seq != top + 1:
                wrong += 1
                if seq < top:
                    late.append(seq)
                    lateness.append(ms(arrived - top_arrived))
            if seq > top:
                top, top_arrived = seq, arrived
        out_of_order.append(wrong)
        missing += max(0, last_seq - (client.snapshot_seq or 0) - len(seen))
    created = await asyncio.to_thread(event_times, workspace, sorted({s for s, _ in arrivals}))
    commit = [ms(t - created[seq]) for seq, t in arrivals if seq in created]
    last: dict[int, float] = {}
    first: dict[int, float] = {}
    for seq, arrived in arrivals:
        last[seq] = max(last.get(seq, 0.0), arrived)
        first[seq] = min(first.get(seq, math.inf), arrived)
    events = len(created)
    # The slowest events: (seq, commit->first client, commit->last client), in ms.
    slowest = sorted(
        ((s, round(ms(first[s] - created[s]), 1), round(ms(t - created[s]), 1))
         for s, t in last.items() if s in created),
        key=lambda row: -row[2],
    )[:5]  # fmt: skip
    result = {
        "clients": len(clients),
        "rounds": cfg.order_rounds,
        "writers": cfg.order_writers,
        "patches": cfg.order_patches,
        "patch_errors": patch_errors,
        "events": events,
        "delivered": len(arrivals),
        "expected": events * len(clients),
        "missing": missing,
        "duplicates": duplicates,
        "out_of_order": sum(out_of_order),
        "out_of_order_max_per_client": max(out_of_order, default=0),
        "clients_with_out_of_order": sum(1 for n in out_of_order if n),
        "layer_reorder_window_ms": stats(_windows(heard)),
        "layer_reordered": len(_windows(heard)),
        "late": len(late),
        "late_by_ms": stats(lateness),
        "commit_to_client": stats(commit),
        "last_subscriber": stats([ms(t - created[s]) for s, t in last.items() if s in created]),
        "slowest": slowest,
    }
    await close_clients(clients)
    worst, late_by = result["out_of_order_max_per_client"], result["late_by_ms"]
    commit_ms, window = result["commit_to_client"], result["layer_reorder_window_ms"]
    log(
        f"   {len(clients)} clients, {events} events: out of order {result['out_of_order']} "
        f"({result['clients_with_out_of_order']} clients, max {worst}), late {len(late)} "
        f"(by p50 {late_by['p50']:.1f} max {late_by['max']:.1f} ms), missing {missing}; "
        f"commit->client p50 {commit_ms['p50']:.1f} p99 {commit_ms['p99']:.1f} "
        f"max {commit_ms['max']:.1f} ms; at the layer {result['layer_reordered']} reordered "
        f"(by p50 {window['p50']:.1f} p99 {window['p99']:.1f} max {window['max']:.1f} ms); "
        f"slowest (seq, first, last ms) {slowest[:3]}"
    )
    return result


# -- orchestration ---------------------------------------------------------------------------


def orchestration(stack: Stack, fx: Fixture, cfg: Config, log: Log) -> dict:
    """POST-to-ready minus the provider's own time, on an idle worker (instant provider).

    Half the tabs open on a fresh task (they provision a sandbox, then open a session), half
    on a task whose sandbox is ready (session only). The provider's own time is the recorded
    ProvisioningStep durations of the tab's sandbox (fresh tasks only) plus the timed
    `create_session` call. One websocket client also times the worker's `ready` events.
    """
    stack.start_workers(delay=0.0)
    (ready_task,) = new_tasks(fx, 1, "orchestration ready", workspace_id=fx.stream_workspace_id)
    asyncio.run(tab_phase(fx, [ready_task], rate=10, count=1, users=1))
    wait_for_tabs({"task_id": ready_task}, cfg.ready_timeout)
    clear_instrument(fx)
    fresh = new_tasks(
        fx, math.ceil(cfg.orch_count / 2), "orchestration", workspace_id=fx.stream_workspace_id
    )
    tasks = [t for pair in zip(fresh, [ready_task] * len(fresh), strict=True) for t in pair]
    run, frames = asyncio.run(_orchestration_load(fx, cfg, tasks))
    wait_for_tabs({"pk__in": [s.body["id"] for s in run.ok]}, cfg.ready_timeout)
    result = _orchestration_analysis(fx, run, frames, set(fresh))
    stack.stop_workers()
    for kind in ("fresh_task", "ready_task"):
        row = result[kind]
        log(
            f"   {kind}: POST->ready p50 {row['post_to_ready']['p50']:.0f} ms, provider p50 "
            f"{row['provider']['p50']:.0f} ms, overhead p50 {row['overhead']['p50']:.1f} "
            f"p99 {row['overhead']['p99']:.1f} ms"
        )
    return result


async def _orchestration_load(
    fx: Fixture, cfg: Config, tasks: list[int]
) -> tuple[Run, list[tuple[float, bytes]]]:
    url = f"{fx.ws_url}/ws/workspaces/{fx.stream_workspace_id}/"
    (listener,) = await open_clients(url, fx.tokens[0], 1)
    run = await tab_phase(fx, tasks, rate=cfg.orch_rate, count=len(tasks), keep_body=True, users=1)
    ids = {s.body["id"] for s in run.ok}
    deadline = time.monotonic() + cfg.ready_timeout
    while time.monotonic() < deadline:
        if len(tab_events([listener], ids, state="ready")) >= len(ids):
            break
        await asyncio.sleep(0.1)
    await listener.close()
    return run, listener.frames


def _orchestration_analysis(
    fx: Fixture, run: Run, frames: list[tuple[float, bytes]], fresh: set[int]
) -> dict:
    from sandboxes.models import ProvisioningStep
    from workbench.models import WorkbenchTab

    posted = {s.body["id"]: s for s in run.ok}
    tabs = {str(t.pk): t for t in WorkbenchTab.objects.filter(pk__in=list(posted))}
    sessions = {row["server_id"]: row for row in instrument_rows(fx, instrument.SESSIONS_KEY)}
    task_rows = instrument_rows(fx, instrument.TASKS_KEY)
    first_start: dict[tuple[str, str], float] = {}
    for row in task_rows:
        key = (row["task"].rsplit(".", 1)[-1], row["arg"])
        first_start.setdefault(key, row["started"])
    steps_by_task: dict[int, list[ProvisioningStep]] = {}
    for step in ProvisioningStep.objects.filter(sandbox__task_id__in=fresh).select_related(
        "sandbox"
    ):
        steps_by_task.setdefault(step.sandbox.task_id, []).append(step)

    class Rows:
        def __init__(self) -> None:
            self.columns: dict[str, list[float]] = {}

        def add(self, name: str, value: float | None) -> None:
            if value is not None:
                self.columns.setdefault(name, []).append(value)

        def summary(self) -> dict[str, Any]:
            return {name: stats(values) for name, values in self.columns.items()}

    kinds = {"fresh_task": Rows(), "ready_task": Rows()}
    not_ready = 0
    for tab_id, sample in posted.items():
        tab = tabs.get(tab_id)
        if tab is None or tab.state != "ready" or tab.ready_at is None:
            not_ready += 1
            continue
        rows = kinds["fresh_task" if tab.task_id in fresh else "ready_task"]
        session = sessions.get(f"tab-{tab.pk.hex}-{tab.attempt}")
        session_ms = ms(session["ended"] - session["started"]) if session else 0.0
        steps = steps_by_task.get(tab.task_id, [])
        steps_ms = sum(ms((s.finished_at - s.started_at).total_seconds()) for s in steps)
        post_to_ready = ms(tab.ready_at.timestamp() - sample.sent_wall)
        provider = steps_ms + session_ms
        rows.add("post_to_ready", post_to_ready)
        rows.add("provider", provider)
        rows.add("provider_steps", steps_ms if steps else None)
        rows.add("provider_session", session_ms)
        rows.add("overhead", post_to_ready - provider)
        rows.add("post_to_row", ms(tab.created_at.timestamp() - sample.sent_wall))
        provision_start = first_start.get(("provision_sandbox", str(tab.sandbox_id)))
        session_start = first_start.get(("open_tab_session", tab_id))
        if provision_start is not None:
            rows.add("row_to_first_task", ms(provision_start - tab.created_at.timestamp()))
        elif session_start is not None:
            rows.add("row_to_first_task", ms(session_start - tab.created_at.timestamp()))
        if steps and provision_start is not None:
            first_step = steps[0].started_at.timestamp()
            last_step = steps[-1].finished_at.timestamp()
            rows.add("task_start_to_first_step", ms(first_step - provision_start))
            if session_start is not None:
                rows.add("last_step_to_session_task", ms(session_start - last_step))
            span = ms((steps[-1].finished_at - steps[0].started_at).total_seconds())
            rows.add("between_steps", span - steps_ms)
        if session and session_start is not None:
            rows.add("session_task_to_call", ms(session["started"] - session_start))
            rows.add("call_to_ready", ms(tab.ready_at.timestamp() - session["ended"]))
    ready_events = tab_events_from_frames(frames, set(posted), state="ready")
    created = event_times(fx.stream_workspace_id, [seq for _, seq, _ in ready_events])
    worker_commit = [ms(t - created[seq]) for _, seq, t in ready_events if seq in created]
    return {
        "count": len(posted),
        "post_errors": dict(run.errors),
        "not_ready": not_ready,
        "fresh_task": kinds["fresh_task"].summary(),
        "ready_task": kinds["ready_task"].summary(),
        "celery": celery_waits(task_rows),
        "worker_event_to_client": stats(worker_commit),
    }


def tab_events_from_frames(
    frames: list[tuple[float, bytes]], tab_ids: set[str], *, state: str
) -> list[tuple[str, int, float]]:
    found = []
    for arrived, raw in frames:
        frame = json.loads(raw)
        data = frame.get("data") or {}
        if (
            frame.get("type") == "event"
            and frame.get("event") == "tab.updated"
            and data.get("id") in tab_ids
            and data.get("state") == state
        ):
            found.append((data["id"], frame["seq"], arrived))
    return found


# -- one task, many tabs ---------------------------------------------------------------------


def burst(stack: Stack, fx: Fixture, cfg: Config, log: Log) -> dict:
    """`burst_tabs` tabs opened at once on one fresh task (instant provider, idle worker)."""
    from sandboxes.models import ProvisioningStep, Sandbox
    from workbench.models import WorkbenchTab

    stack.start_workers(delay=0.0)
    clear_instrument(fx)
    (task,) = new_tasks(fx, 1, "burst")
    run = asyncio.run(tab_phase(fx, [task], rate=2000, count=cfg.burst_tabs, keep_body=True))
    first_sent = min(s.sent_wall for s in run.samples)
    _, pending = wait_for_tabs({"task_id": task}, cfg.ready_timeout)
    tabs = list(WorkbenchTab.objects.filter(task_id=task))
    ready = [t.ready_at.timestamp() for t in tabs if t.state == "ready" and t.ready_at]
    sandbox_ready = Sandbox.objects.filter(task_id=task).values_list("ready_at", flat=True)
    rows = instrument_rows(fx, instrument.TASKS_KEY)
    tab_ids = {str(t.pk) for t in tabs}
    sandbox_ids = {
        str(pk) for pk in Sandbox.objects.filter(task_id=task).values_list("pk", flat=True)
    }
    result = {
        "tabs": len(tabs),
        "post": run.summary(),
        "ready": len(ready),
        "not_ready": len(tabs) - len(ready),
        "sandboxes": Sandbox.objects.filter(task_id=task).count(),
        "start_server_steps": ProvisioningStep.objects.filter(
            sandbox__task_id=task, name="start_server"
        ).count(),
        "sandbox_ready_s": min(
            (r.timestamp() - first_sent for r in sandbox_ready if r), default=math.nan
        ),
        "first_ready_s": min(ready) - first_sent if ready else math.nan,
        "all_ready_s": max(ready) - first_sent if ready and not pending else math.nan,
        "provision_task_runs": sum(
            1 for r in rows if r["task"].endswith("provision_sandbox") and r["arg"] in sandbox_ids
        ),
        "session_task_runs": sum(
            1 for r in rows if r["task"].endswith("open_tab_session") and r["arg"] in tab_ids
        ),
    }
    stack.stop_workers()
    log(
        f"   {result['tabs']} tabs, {result['sandboxes']} sandbox(es), all ready after "
        f"{result['all_ready_s']:.2f} s (sandbox ready after {result['sandbox_ready_s']:.2f} s)"
    )
    return result


def waiting(stack: Stack, fx: Fixture, cfg: Config, log: Log) -> dict:
    """`waiting_tabs` tabs opened on one new task whose provisioning takes `waiting_delay` s:
    how many Celery task executions the whole story costs, per tab (a waiting tab should be
    a row, not a stream of messages)."""
    from collections import Counter

    from sandboxes.models import Sandbox
    from workbench.models import WorkbenchTab

    stack.start_workers(delay=cfg.waiting_delay)
    clear_instrument(fx)
    (task,) = new_tasks(fx, 1, "waiting")
    run = asyncio.run(tab_phase(fx, [task], rate=200, count=cfg.waiting_tabs, keep_body=True))
    _, pending = wait_for_tabs({"task_id": task}, cfg.ready_timeout + cfg.waiting_delay)
    rows = instrument_rows(fx, instrument.TASKS_KEY)
    by_task = Counter(r["task"].rsplit(".", 1)[-1] for r in rows)
    tabs = WorkbenchTab.objects.filter(task_id=task)
    result = {
        "tabs": tabs.count(),
        "delay": cfg.waiting_delay,
        "ready": tabs.filter(state="ready").count(),
        "pending": pending,
        "post": run.summary(),
        "sandboxes": Sandbox.objects.filter(task_id=task).count(),
        "executions": sum(by_task.values()),
        "by_task": dict(by_task),
        "per_tab": sum(by_task.values()) / max(tabs.count(), 1),
    }
    stack.stop_workers()
    log(
        f"   {result['ready']}/{result['tabs']} ready, {result['executions']} Celery executions "
        f"({result['per_tab']:.2f} per tab): {dict(by_task)}"
    )
    return result


# -- throughput ------------------------------------------------------------------------------


def sustained(stack: Stack, fx: Fixture, cfg: Config, log: Log) -> dict:
    """A rising ladder of open-loop rates, first with no worker consuming (the API alone),
    then with the worker pools processing every tab for real (instant provider) on the same
    cores and database. Each ladder stops at the first rate it does not sustain."""
    stack.stop_workers()
    log("   the API alone (no worker consuming):")
    api_only = _ladder(fx, cfg, log)
    stack.stop_workers()  # drop the chains those tabs dispatched
    stack.start_workers(delay=0.0)
    warm_workers(fx, cfg)
    log("   with the worker pools processing every tab:")
    began = time.time()
    with_workers = _ladder(fx, cfg, log)
    elapsed = time.time() - began
    from workbench.models import WorkbenchTab

    tasks = [task for step in with_workers for task in step.pop("tasks")]
    for step in api_only:
        step.pop("tasks")
    ready = WorkbenchTab.objects.filter(task_id__in=tasks, state="ready").count()
    total = WorkbenchTab.objects.filter(task_id__in=tasks).count()
    stack.stop_workers()
    return {
        "api_only": api_only,
        "steps": with_workers,
        "ready_during_ladder": ready,
        "created_during_ladder": total,
        "ladder_seconds": elapsed,
    }


def _ladder(fx: Fixture, cfg: Config, log: Log) -> list[dict[str, Any]]:
    from bench.report import sustained_ok

    steps = []
    for rate, seconds in cfg.ladder:
        tasks = new_tasks(fx, cfg.ladder_pool, f"ladder {rate}/s")
        summary = asyncio.run(tab_phase(fx, tasks, rate=rate, seconds=seconds)).summary()
        summary["tasks"] = tasks
        steps.append(summary)
        log(
            f"   {rate:>4g}/s  {summary['ok']}/{summary['sent']} ok, {summary['throughput']:.0f}"
            f"/s achieved, p50 {summary['p50']:.1f} p99 {summary['p99']:.1f} ms, errors "
            f"{summary['errors'] or 0}"
        )
        if not sustained_ok(summary):
            break  # higher rates only pile up a longer backlog
    return steps


# -- history ---------------------------------------------------------------------------------


def history(stack: Stack, fx: Fixture, cfg: Config, log: Log) -> dict:
    """Tab POST latency on a task with no history, and on one whose task and poster carry
    `history_tabs` closed tabs (rows written directly): opening a tab must not cost more as
    closed tabs pile up (the limit checks and the default title run under the workspace
    lock). The two alternate in rounds, so drift hits both alike."""
    import httpx
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from core import services as core_services
    from workbench.models import TabState, WorkbenchTab

    stack.stop_workers()  # only the request is measured; its messages wait in Redis
    poster = get_user_model().objects.create_user(username=f"history{time.time_ns()}")
    core_services.membership_add(workspace_id=fx.workspace_id, user=poster)
    token = Token.objects.create(user=poster).key
    empty, heavy = new_tasks(fx, 2, "history")
    WorkbenchTab.objects.bulk_create(
        (
            WorkbenchTab(
                workspace_id=fx.workspace_id,
                task_id=heavy,
                created_by=poster,
                title=f"closed {n}",
                agent="mock",
                state=TabState.CLOSED,
            )
            for n in range(cfg.history_tabs)
        ),
        batch_size=1000,
    )
    times: dict[str, list[float]] = {"empty": [], "history": []}
    with httpx.Client(
        base_url=fx.base_url, headers={"Authorization": f"Token {token}"}, timeout=30
    ) as client:
        for _ in range(cfg.history_rounds):
            for name, task in (("empty", empty), ("history", heavy)):
                for _ in range(cfg.history_per_round):
                    start = time.perf_counter()
                    response = client.post(f"/api/tasks/{task}/tabs/", json={})
                    elapsed = time.perf_counter() - start
                    assert response.status_code == 201, response.text
                    times[name].append(ms(elapsed))
    stack.purge_queues()
    out = {name: stats(values) for name, values in times.items()}
    out["closed_tabs"] = cfg.history_tabs
    out["p50_ratio"] = out["history"]["p50"] / out["empty"]["p50"]
    log(
        f"   empty p50 {out['empty']['p50']:.1f} ms, with {cfg.history_tabs} closed "
        f"{out['history']['p50']:.1f} ms: x{out['p50_ratio']:.2f}"
    )
    return out
