"""Workspaces of any size (issue 16): what a websocket connect, a REST list and another
member's socket cost as a workspace grows to 10,000 tasks or 10,000 open tabs.

Runs in bench/service.py's child process (Django set up against the services' database),
as the `workspace_size` scenario. The data is written once, directly through the models
(bulk_create; no events, no workers), then measured:

1. connect-to-snapshot over /ws/workspaces/{id}/ (token auth), `size_connects` sequential
   connects per workspace: 10 tasks with one open tab each; 10,000 tasks with a sandbox each
   (mostly ready with its four recorded steps, some failed or provisioning, some with an
   older destroyed attempt) and a few tabs; 10,000 open tabs over 50 tasks (200 each, the
   per-task cap). Each connect ends at the first `snapshot` frame, at a close (Daphne closes
   with 1011 when the application fails, e.g. on a frame over its 1 MiB limit) or after
   `size_connect_timeout` s; a workspace's series stops early once it has taken
   `size_connect_budget` s, so a slow build cannot stall the run. Also, in this process:
   the SQL queries of `workbench.selectors.workbench_snapshot` (CaptureQueriesContext), its
   time and its JSON size;
2. the first page of GET /api/workspaces/{id}/tasks/ (100 tasks vs 10,000) and of GET
   /api/tasks/{id}/tabs/?include_closed=1 (100 closed tabs vs 10,000), alternating;
3. another member's ping round trip (`{"type": "ping"}` -> `pong`) at `size_ping_rate`/s on
   the small workspace, and their own connects there, idle and then while the first member
   reconnects to the 10,000-task workspace: "paced", once every `size_reconnect_interval`
   s (the default per-user connect limit, 60/min), and "flood", `size_reconnect_loops`
   loops back to back (the bench lifts that limit). The loops run in a separate process,
   so their frames do not block the measuring client.

At the end Daphne is restarted (a snapshot build the loops abandoned may still be running
there) and the workspaces are deleted, so a later scenario finds neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import re
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from bench.loadgen import stats

if TYPE_CHECKING:
    from collections.abc import Callable

    from bench.scenarios import Fixture
    from bench.service import Config
    from bench.stack import Stack
    from workbench.models import WorkbenchTab

    Log = Callable[[str], None]

# The frame's type, read from its first bytes: a 5 MB snapshot is not parsed to learn it.
TYPE_AT_START = re.compile(rb'\s*\{\s*"type"\s*:\s*"([a-z_.]+)"')
# What a ready sandbox of the local provider records (sandboxes/providers/local.py).
STEPS = ("prepare_workspace", "start_server", "wait_healthy", "install_agent")
MEMBER_CONNECT_PAUSE = 0.5  # seconds between the second member's own connects


# -- the data --------------------------------------------------------------------------------


def _now() -> datetime:
    from django.utils import timezone

    return timezone.now()


def _make_tasks(workspace_id: int, owner_id: int, count: int, title: str, opened: int) -> list[int]:
    from tasks_app.models import Task

    Task.objects.bulk_create(
        (
            Task(
                workspace_id=workspace_id,
                title=f"{title} {n}",
                created_by_id=owner_id,
                tabs_opened=opened,
            )
            for n in range(count)
        ),
        batch_size=1000,
    )
    return list(
        Task.objects.filter(workspace_id=workspace_id).order_by("pk").values_list("pk", flat=True)
    )


def _make_sandboxes(workspace_id: int, task_ids: list[int], *, variety: bool) -> dict[int, int]:
    """A sandbox per task, with its recorded steps; {task id: its ready sandbox's id}.

    variety: one task in 20 has a failed sandbox, one in 20 a provisioning one (a step
    running), one in 10 an older destroyed attempt besides its ready one; else all ready."""
    from sandboxes.models import ProvisioningStep, Sandbox, SandboxState, StepOutcome

    base = _now() - timedelta(hours=1)
    rows = []
    for n, task_id in enumerate(task_ids):
        state = SandboxState.READY
        if variety and n % 20 == 0:
            state = SandboxState.FAILED
        elif variety and n % 20 == 1:
            state = SandboxState.PROVISIONING
        if variety and n % 10 == 2:
            rows.append(
                Sandbox(
                    task_id=task_id,
                    provider="local",
                    agent="mock",
                    key=f"size-{workspace_id}-{task_id}-1",
                    state=SandboxState.DESTROYED,
                    workdir=f"/var/sandboxes/size-{task_id}-1",
                    destroyed_at=base,
                    ready_at=base - timedelta(minutes=5),
                )
            )
        ready = state == SandboxState.READY
        rows.append(
            Sandbox(
                task_id=task_id,
                provider="local",
                agent="mock",
                key=f"size-{workspace_id}-{task_id}-2",
                state=state,
                error_code="provision_failed" if state == SandboxState.FAILED else "",
                error_message="start_server: exited with 1" if state == SandboxState.FAILED else "",
                base_url="http://127.0.0.1:9" if ready else "",
                token="bench-token" if ready else "",
                workdir=f"/var/sandboxes/size-{task_id}-2",
                agent_models=[["mock-small", "Mock small"], ["mock-large", "Mock large"]]
                if ready
                else [],
                default_model="mock-small" if ready else "",
                ready_at=base if ready else None,
            )
        )
    Sandbox.objects.bulk_create(rows, batch_size=1000)
    made = Sandbox.objects.filter(task__workspace_id=workspace_id).values_list(
        "pk", "task_id", "state"
    )
    steps = []
    live: dict[int, int] = {}
    for pk, task_id, made_state in made:
        if made_state == SandboxState.READY:
            live[task_id] = pk
        started = base - timedelta(seconds=30)
        if made_state in (SandboxState.READY, SandboxState.DESTROYED):
            outcomes = [(name, StepOutcome.SUCCEEDED) for name in STEPS]
        elif made_state == SandboxState.FAILED:
            outcomes = [(STEPS[0], StepOutcome.SUCCEEDED), (STEPS[1], StepOutcome.FAILED)]
        else:
            outcomes = [(STEPS[0], StepOutcome.SUCCEEDED), (STEPS[1], StepOutcome.RUNNING)]
        for k, (name, outcome) in enumerate(outcomes):
            at = started + timedelta(milliseconds=120 * k)
            steps.append(
                ProvisioningStep(
                    sandbox_id=pk,
                    name=name,
                    outcome=outcome,
                    detail="exit status 1" if outcome == StepOutcome.FAILED else "",
                    fence=1,
                    started_at=at,
                    finished_at=None
                    if outcome == StepOutcome.RUNNING
                    else at + timedelta(milliseconds=100),
                )
            )
    ProvisioningStep.objects.bulk_create(steps, batch_size=1000)
    return live


def _open_tab(
    workspace_id: int, task_id: int, sandbox_id: int | None, owner_id: int, n: int
) -> WorkbenchTab:
    from workbench.models import TabErrorCode, TabState, WorkbenchTab

    tab_id = uuid.uuid4()
    tab = WorkbenchTab(
        id=tab_id,
        workspace_id=workspace_id,
        task_id=task_id,
        sandbox_id=sandbox_id,
        created_by_id=owner_id,
        title=f"Tab {n + 1}",
        agent="mock",
        state=TabState.READY,
    )
    if sandbox_id is None or n % 20 == 0:  # one in 20 failed, with its reason
        tab.state = TabState.ERROR
        tab.error_code = TabErrorCode.SESSION_FAILED
        tab.error_message = "the agent's session could not be created"
    elif n % 20 == 1:
        tab.state = TabState.PENDING_SESSION_CREATE
    else:
        tab.session_id = f"session-{tab_id.hex}"
        tab.acp_server_id = f"tab-{tab_id.hex}-1"
        tab.ready_at = _now()
    return tab


def _make_open_tabs(
    workspace_id: int, owner_id: int, per_task: dict[int, int], sandboxes: dict[int, int]
) -> int:
    from workbench.models import WorkbenchTab

    tabs = [
        _open_tab(workspace_id, task_id, sandboxes.get(task_id), owner_id, n)
        for task_id, count in per_task.items()
        for n in range(count)
    ]
    WorkbenchTab.objects.bulk_create(tabs, batch_size=1000)
    return len(tabs)


def _make_closed_tabs(workspace_id: int, task_id: int, owner_id: int, count: int) -> None:
    from tasks_app.models import Task
    from workbench.models import TabState, WorkbenchTab

    closed = _now()
    WorkbenchTab.objects.bulk_create(
        (
            WorkbenchTab(
                workspace_id=workspace_id,
                task_id=task_id,
                created_by_id=owner_id,
                title=f"Tab {n + 1}",
                agent="mock",
                state=TabState.CLOSED,
                closed_at=closed,
                session_closed_at=closed,
            )
            for n in range(count)
        ),
        batch_size=1000,
    )
    Task.objects.filter(pk=task_id).update(tabs_opened=count)


def build(fx: Fixture, cfg: Config) -> dict[str, Any]:
    """Every workspace of the scenario; their ids and what they hold."""
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from core import services as core_services
    from tasks_app.models import Task

    users = get_user_model().objects.in_bulk(fx.user_ids[:2])
    owner, other = users[fx.user_ids[0]], users[fx.user_ids[1 % len(fx.user_ids)]]
    out: dict[str, Any] = {"owner": owner.pk, "other": other.pk}

    def workspace(name: str) -> int:
        return core_services.workspace_create(user=owner, name=f"Workspace size: {name}").pk

    with transaction.atomic():
        small = workspace(f"{cfg.size_small_tasks} tasks")
        tasks = _make_tasks(small, owner.pk, cfg.size_small_tasks, "small", 1)
        live = _make_sandboxes(small, tasks, variety=False)
        opened = _make_open_tabs(small, owner.pk, dict.fromkeys(tasks, 1), live)
        out["small"] = {"id": small, "tasks": len(tasks), "open_tabs": opened}
    if other.pk != owner.pk:  # the second member (pings, part 3)
        core_services.membership_add(workspace_id=small, user=other)

    with transaction.atomic():
        many = workspace(f"{cfg.size_tasks} tasks")
        tasks = _make_tasks(many, owner.pk, cfg.size_tasks, "task", 0)
        live = _make_sandboxes(many, tasks, variety=True)
        few = tasks[: min(10, len(tasks))]  # a few tabs
        Task.objects.filter(pk__in=few).update(tabs_opened=1)
        opened = _make_open_tabs(many, owner.pk, dict.fromkeys(few, 1), live)
        out["tasks"] = {"id": many, "tasks": len(tasks), "open_tabs": opened}

    with transaction.atomic():
        tabbed = workspace(f"{cfg.size_tab_tasks * cfg.size_tabs_per_task} tabs")
        tasks = _make_tasks(tabbed, owner.pk, cfg.size_tab_tasks, "tabbed", cfg.size_tabs_per_task)
        live = _make_sandboxes(tabbed, tasks, variety=False)
        per_task = dict.fromkeys(tasks, cfg.size_tabs_per_task)
        opened = _make_open_tabs(tabbed, owner.pk, per_task, live)
        out["tabs"] = {"id": tabbed, "tasks": len(tasks), "open_tabs": opened}

    with transaction.atomic():  # REST: a workspace of size_list_tasks tasks
        listed = workspace(f"{cfg.size_list_tasks} tasks")
        tasks = _make_tasks(listed, owner.pk, cfg.size_list_tasks, "listed", 0)
        _make_sandboxes(listed, tasks, variety=True)
        out["list_small"] = {"id": listed, "tasks": len(tasks)}

    with transaction.atomic():  # REST: two tasks, with size_list_tasks and size_closed_tabs closed
        history = workspace("closed tabs")
        few_closed, many_closed = _make_tasks(history, owner.pk, 2, "closed tabs", 0)
        _make_closed_tabs(history, few_closed, owner.pk, cfg.size_list_tasks)
        _make_closed_tabs(history, many_closed, owner.pk, cfg.size_closed_tabs)
        out["closed"] = {
            "id": history,
            "few_task": few_closed,
            "few": cfg.size_list_tasks,
            "many_task": many_closed,
            "many": cfg.size_closed_tabs,
        }
    _analyze()
    return out


def _analyze() -> None:
    """Table statistics as autovacuum has them within a minute of such a write. Without
    them PostgreSQL plans the 10,000-row tables as nearly empty (the first page's task read
    became a scan and sort of all 10,000; 12 ms instead of 1 ms)."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


def delete(workspace_ids: list[int]) -> None:
    from django.db import close_old_connections

    from core.models import Workspace

    Workspace.objects.filter(pk__in=workspace_ids).delete()
    close_old_connections()


def snapshot_cost(workspace_id: int, user_id: int) -> dict[str, Any]:
    """The queries, time and JSON size of building the snapshot here, in this process."""
    from django.db import close_old_connections, connection
    from django.test.utils import CaptureQueriesContext

    from core.models import Workspace
    from workbench.selectors import workbench_snapshot

    workspace = Workspace.objects.get(pk=workspace_id)
    started = time.perf_counter()
    with CaptureQueriesContext(connection) as captured:
        snapshot = workbench_snapshot(workspace=workspace, user_id=user_id)
    built = time.perf_counter() - started
    size = len(json.dumps(snapshot, default=str).encode())
    close_old_connections()
    return {
        "queries": len(captured.captured_queries),
        "build_ms": built * 1000,
        "bytes": size,
        "tasks": len(snapshot.get("tasks") or []),
        "tabs": len(snapshot.get("tabs") or []),
    }


# -- websocket connects ---------------------------------------------------------------------


def frame_type(raw: bytes | str) -> str | None:
    data = raw.encode() if isinstance(raw, str) else raw
    found = TYPE_AT_START.match(data[:200])
    if found:
        return found.group(1).decode()
    try:
        frame = json.loads(data)
    except ValueError:
        return None
    return frame.get("type") if isinstance(frame, dict) else None


async def connect_once(url: str, token: str, timeout: float) -> dict[str, Any]:
    """One connect: the time to the first `snapshot` frame, or to the close or the timeout
    that came instead (outcome "snapshot", "closed", "timeout" or "refused")."""
    started = time.perf_counter()
    result: dict[str, Any] = {"outcome": "timeout", "code": None, "bytes": None}
    try:
        async with asyncio.timeout(timeout):
            async with connect(
                url,
                additional_headers={"Authorization": f"Token {token}"},
                compression=None,
                max_size=None,
                open_timeout=timeout,
                ping_interval=None,
                close_timeout=2,
            ) as ws:
                while True:
                    raw = await ws.recv(decode=False)
                    if frame_type(raw) == "snapshot":
                        result["ms"] = (time.perf_counter() - started) * 1000
                        result.update(outcome="snapshot", bytes=len(raw))
                        break
    except TimeoutError:
        pass  # the outcome stays (a timeout while closing after the snapshot is no failure)
    except ConnectionClosed as exc:
        result.update(outcome="closed", code=exc.rcvd.code if exc.rcvd else 1006)
    except (InvalidHandshake, OSError) as exc:
        result.update(outcome="refused", code=type(exc).__name__)
    result.setdefault("ms", (time.perf_counter() - started) * 1000)
    return result


def connect_summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    snapshots = [r for r in results if r["outcome"] == "snapshot"]
    closes = Counter(str(r["code"]) for r in results if r["outcome"] == "closed")
    return {
        "connects": len(results),
        "snapshots": len(snapshots),
        "connect_to_snapshot": stats([r["ms"] for r in snapshots]),
        "times_ms": [round(r["ms"], 1) for r in results],  # in order: a cold first shows
        "connect_to_outcome": stats([r["ms"] for r in results]),
        "closes": dict(closes),
        "close_1011": closes.get("1011", 0),
        "closed": sum(closes.values()),
        "timeouts": sum(1 for r in results if r["outcome"] == "timeout"),
        "refused": sum(1 for r in results if r["outcome"] == "refused"),
        "frame_bytes": max((r["bytes"] for r in snapshots), default=None),
    }


async def connect_series(
    url: str, token: str, *, count: int, timeout: float, budget: float
) -> list[dict[str, Any]]:
    """Sequential connects; none starts once the series has taken `budget` s (one always
    runs)."""
    results: list[dict[str, Any]] = []
    began = time.monotonic()
    for _ in range(count):
        if results and time.monotonic() - began > budget:
            break
        results.append(await connect_once(url, token, timeout))
    return results


def wait_idle(pids: list[int], *, timeout: float = 90.0, busy_share: float = 0.1) -> float:
    """Wait until the processes (the web tier's Daphnes) use under `busy_share` of a core
    together over half a second (an abandoned snapshot build finishing); the seconds
    waited."""
    tick = os.sysconf("SC_CLK_TCK")

    def cpu() -> float:
        total = 0
        for pid in pids:
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime + stime
        return total / tick

    began = time.monotonic()
    while time.monotonic() - began < timeout:
        before = cpu()
        time.sleep(0.5)
        if cpu() - before < busy_share * 0.5:
            break
    return time.monotonic() - began


# -- another member's pings while one member reconnects --------------------------------------


async def pings(url: str, token: str, *, rate: float, seconds: float) -> dict[str, Any]:
    """Ping frames at `rate`/s for `seconds` on one socket; the round trip to each pong
    (paired in order: the consumer answers a socket's frames one after the other)."""
    async with connect(
        url,
        additional_headers={"Authorization": f"Token {token}"},
        compression=None,
        max_size=None,
        open_timeout=60,
        ping_interval=None,
        close_timeout=2,
    ) as ws:
        while frame_type(await asyncio.wait_for(ws.recv(decode=False), 60)) != "snapshot":
            pass
        sent: list[float] = []
        pongs: list[float] = []
        errors: Counter[str] = Counter()

        async def read() -> None:
            with contextlib.suppress(ConnectionClosed):
                async for raw in ws:
                    arrived = time.perf_counter()
                    kind = frame_type(raw)
                    if kind == "pong":
                        pongs.append(arrived)
                    elif kind == "error":
                        errors[json.loads(raw).get("code", "?")] += 1

        reader = asyncio.create_task(read())
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.05
        for n in range(max(1, round(rate * seconds))):
            delay = start + n / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            sent.append(time.perf_counter())
            await ws.send('{"type": "ping"}')
        deadline = loop.time() + 15
        while len(pongs) < len(sent) and loop.time() < deadline and not reader.done():
            await asyncio.sleep(0.02)
        reader.cancel()
    rtt = [(p - s) * 1000 for s, p in zip(sent, pongs, strict=False)]
    return {"sent": len(sent), "pongs": len(pongs), "errors": dict(errors), "rtt": stats(rtt)}


async def member_connects(url: str, token: str, *, seconds: float, timeout: float) -> list[dict]:
    """The second member's own connects, one after the other, for `seconds`."""
    results: list[dict[str, Any]] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        results.append(await connect_once(url, token, timeout))
        await asyncio.sleep(MEMBER_CONNECT_PAUSE)
    return results


async def member_phase(url: str, token: str, cfg: Config) -> dict[str, Any]:
    ping, connects = await asyncio.gather(
        pings(url, token, rate=cfg.size_ping_rate, seconds=cfg.size_ping_seconds),
        member_connects(
            url, token, seconds=cfg.size_ping_seconds, timeout=cfg.size_connect_timeout
        ),
    )
    return {"ping": ping, "connect": connect_summary(connects)}


def _reconnect_process(
    url: str, token: str, loops: int, interval: float, timeout: float, stop: Any, results: Any
) -> None:
    """The first member's reconnect loops, in a process of their own (spawned)."""
    asyncio.run(_reconnect_loops(url, token, loops, interval, timeout, stop, results))


async def _reconnect_loops(
    url: str, token: str, loops: int, interval: float, timeout: float, stop: Any, results: Any
) -> None:
    done: list[dict[str, Any]] = []
    connecting = 0

    async def one_loop() -> None:
        nonlocal connecting
        while not stop.is_set():
            connecting += 1
            started = time.monotonic()
            try:
                done.append(await connect_once(url, token, timeout))
            finally:
                connecting -= 1
            # At most one connect per `interval` (0: back to back, a flood).
            await asyncio.sleep(max(0.0, started + interval - time.monotonic()))

    tasks = [asyncio.create_task(one_loop()) for _ in range(loops)]
    results.put("started")
    while not stop.is_set():
        await asyncio.sleep(0.05)
    unfinished = connecting  # connects still waiting for their snapshot when stopped
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    results.put({**connect_summary(done), "unfinished": unfinished})


def loaded_member_phase(
    url: str,
    big_url: str,
    token: str,
    big_token: str,
    cfg: Config,
    *,
    loops: int,
    interval: float,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """member_phase while the first member reconnects to `big_url` in `loops` loops, each
    at most once per `interval` seconds."""
    context = multiprocessing.get_context("spawn")
    stop, results = context.Event(), context.Queue()
    args = (big_url, big_token, loops, interval, cfg.size_connect_timeout, stop, results)
    process = context.Process(target=_reconnect_process, args=args, daemon=True)
    process.start()
    try:
        results.get(timeout=60)  # the loops are connecting
        time.sleep(1.0)  # their first snapshot builds are under way
        measured = asyncio.run(member_phase(url, token, cfg))
        stop.set()
        reconnects = results.get(timeout=30)
    finally:
        stop.set()
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join()
    return measured, reconnects


# -- the scenario ----------------------------------------------------------------------------


def _rest_lists(fx: Fixture, built: dict[str, Any], cfg: Config, token: str) -> dict[str, Any]:
    import httpx

    closed = built["closed"]
    lists = {
        "tasks": (
            (f"/api/workspaces/{built['list_small']['id']}/tasks/", built["list_small"]["tasks"]),
            (f"/api/workspaces/{built['tasks']['id']}/tasks/", built["tasks"]["tasks"]),
        ),
        "closed_tabs": (
            (f"/api/tasks/{closed['few_task']}/tabs/?include_closed=1", closed["few"]),
            (f"/api/tasks/{closed['many_task']}/tabs/?include_closed=1", closed["many"]),
        ),
    }
    out: dict[str, Any] = {}
    with httpx.Client(
        base_url=fx.base_url, headers={"Authorization": f"Token {token}"}, timeout=60
    ) as client:
        for name, pair in lists.items():
            for path, _ in pair:  # warm each path once
                client.get(path).raise_for_status()
            times: list[list[float]] = [[], []]
            last: list[httpx.Response | None] = [None, None]
            for _ in range(cfg.size_rest_requests):
                for k, (path, _) in enumerate(pair):
                    started = time.perf_counter()
                    response = client.get(path)
                    times[k].append((time.perf_counter() - started) * 1000)
                    response.raise_for_status()
                    last[k] = response
            rows = []
            for k, (path, size) in enumerate(pair):
                page = last[k]
                assert page is not None
                rows.append(
                    {
                        "path": path,
                        "rows": size,
                        "latency": stats(times[k]),
                        "bytes": len(page.content),
                        "items": len(page.json()),
                        "next_link": 'rel="next"' in page.headers.get("Link", ""),
                    }
                )
            out[name] = {
                "small": rows[0],
                "large": rows[1],
                "p50_ratio": _ratio(rows[1]["latency"]["p50"], rows[0]["latency"]["p50"]),
                "bytes_ratio": _ratio(rows[1]["bytes"], rows[0]["bytes"]),
            }
    return out


def _ratio(a: float | None, b: float | None) -> float:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return math.nan
    return a / b


def _ratios(large: dict[str, Any], small: dict[str, Any]) -> dict[str, float]:
    """A large workspace's figures over the small one's (same run)."""
    return {
        "p50": _ratio(large["connect_to_snapshot"]["p50"], small["connect_to_snapshot"]["p50"]),
        "p99": _ratio(large["connect_to_snapshot"]["p99"], small["connect_to_snapshot"]["p99"]),
        "outcome_p50": _ratio(
            large["connect_to_outcome"]["p50"], small["connect_to_outcome"]["p50"]
        ),
        "bytes": _ratio(large["snapshot"]["bytes"], small["snapshot"]["bytes"]),
        "queries": _ratio(large["snapshot"]["queries"], small["snapshot"]["queries"]),
    }


def workspace_size(stack: Stack, fx: Fixture, cfg: Config, log: Log) -> dict[str, Any]:
    assert stack.daphne is not None
    stack.stop_workers()  # nothing but the measured reads; no reconciler sees the rows
    began = time.monotonic()
    built = build(fx, cfg)
    workspace_ids = [built[k]["id"] for k in ("small", "tasks", "tabs", "list_small", "closed")]
    out: dict[str, Any] = {"build_seconds": time.monotonic() - began}
    log(f"   data written in {out['build_seconds']:.1f} s")
    owner_token = fx.tokens[0]
    other_token = fx.tokens[1 % len(fx.tokens)]
    try:
        url = f"{fx.ws_url}/ws/workspaces/{{}}/"
        asyncio.run(connect_once(url.format(built["small"]["id"]), owner_token, 30))  # warm
        workspaces: dict[str, Any] = {}
        for name in ("small", "tasks", "tabs"):
            row = dict(built[name])
            row["snapshot"] = snapshot_cost(row["id"], built["owner"])
            series = asyncio.run(
                connect_series(
                    url.format(row["id"]),
                    owner_token,
                    count=cfg.size_connects,
                    timeout=cfg.size_connect_timeout,
                    budget=cfg.size_connect_budget,
                )
            )
            row.update(connect_summary(series))
            row["idle_wait_s"] = wait_idle(stack.daphne_pids())
            workspaces[name] = row
            c, s = row["connect_to_snapshot"], row["snapshot"]
            log(
                f"   {name}: {row['tasks']} tasks, {row['open_tabs']} open tabs: "
                f"{row['snapshots']}/{row['connects']} snapshots, p50 {c['p50']:.1f} p99 "
                f"{c['p99']:.1f} ms, closes {row['closes'] or 0}, timeouts {row['timeouts']}; "
                f"built here in {s['build_ms']:.0f} ms, {s['queries']} queries, "
                f"{s['bytes']} bytes"
            )
        out["workspaces"] = workspaces
        small = workspaces["small"]
        out["ratios"] = {name: _ratios(workspaces[name], small) for name in ("tasks", "tabs")}

        out["rest"] = _rest_lists(fx, built, cfg, owner_token)
        for name, row in out["rest"].items():
            log(
                f"   GET {name}: {row['small']['rows']} rows p50 "
                f"{row['small']['latency']['p50']:.1f} ms ({row['small']['bytes']} B), "
                f"{row['large']['rows']} rows p50 {row['large']['latency']['p50']:.1f} ms "
                f"({row['large']['bytes']} B): x{row['p50_ratio']:.2f}"
            )

        small_url, big_url = url.format(built["small"]["id"]), url.format(built["tasks"]["id"])
        wait_idle(stack.daphne_pids())
        idle = asyncio.run(member_phase(small_url, other_token, cfg))
        # "paced": one member reconnecting as often as the default per-user connect limit
        # lets them (60/min: once a second); "flood": several loops back to back (the
        # bench's Daphne lifts that limit), a stress beyond what one member can do.
        conditions = {
            "paced": (1, cfg.size_reconnect_interval),
            "flood": (cfg.size_reconnect_loops, 0.0),
        }
        out["member"] = {"idle": idle}
        for name, (loops, interval) in conditions.items():
            wait_idle(stack.daphne_pids())
            loaded, reconnects = loaded_member_phase(
                small_url, big_url, other_token, owner_token, cfg, loops=loops, interval=interval
            )
            out["member"][name] = {
                "loops": loops,
                "interval": interval,
                "loaded": loaded,
                "reconnects": reconnects,
                "rtt_p50_ratio": _ratio(loaded["ping"]["rtt"]["p50"], idle["ping"]["rtt"]["p50"]),
                "rtt_p99_ratio": _ratio(loaded["ping"]["rtt"]["p99"], idle["ping"]["rtt"]["p99"]),
                "connect_p99_ratio": _ratio(
                    loaded["connect"]["connect_to_snapshot"]["p99"],
                    idle["connect"]["connect_to_snapshot"]["p99"],
                ),
            }
        for label, phase in (
            ("idle", idle),
            *((name, out["member"][name]["loaded"]) for name in conditions),
        ):
            rtt, conn = phase["ping"]["rtt"], phase["connect"]["connect_to_snapshot"]
            log(
                f"   other member, {label}: ping p50 {rtt['p50']:.1f} p99 {rtt['p99']:.1f} ms "
                f"({phase['ping']['pongs']}/{phase['ping']['sent']} pongs); connect p50 "
                f"{conn['p50']:.1f} p99 {conn['p99']:.1f} ms (n {conn['n']})"
            )
        for name in conditions:
            row = out["member"][name]
            r = row["reconnects"]
            log(
                f"   first member, {name} ({row['loops']} loops, every {row['interval']:g} s): "
                f"{r['snapshots']}/{r['connects']} snapshots, closes {r['closes'] or 0}, "
                f"timeouts {r['timeouts']}, {r['unfinished']} unfinished when stopped"
            )
    finally:
        stack.daphne.restart()  # drops any snapshot build the loops left running
        delete(workspace_ids)
    return out
