"""Render bench/service.py's results as the `## Service` section of docs/benchmarks.md."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DB_NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}

# "Equal within noise" for saturated vs instant provisioning: medians within 20 % (or 1 ms),
# p99s within 50 % (or 5 ms). A p99 over a few hundred requests is a handful of samples.
NOISE_P50 = (0.20, 1.0)
NOISE_P99 = (0.50, 5.0)
# "Sustained": every request answered 201, the generator kept its schedule, and p99 stayed
# under this (a server falling behind shows up as a latency that grows with the run).
SUSTAINED_P99_MS = 1000.0
# ...and answers at no less than this share of the offered rate (else a queue is growing).
SUSTAINED_SHARE = 0.95


def fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{rev}{' + uncommitted changes' if dirty else ''}"


def within(a: float, b: float, noise: tuple[float, float]) -> bool:
    relative, absolute = noise
    return abs(a - b) <= max(absolute, relative * max(a, b))


def phase_at(db: dict, mode: str, rate: float) -> dict | None:
    for phase in db.get("tab_latency", {}).get(mode, {}).get("phases", []):
        if phase["rate"] == rate:
            return phase
    return None


def sustained_ok(step: dict) -> bool:
    """Every request answered as expected, on schedule, without a growing queue (answers
    keep up with the offered rate)."""
    return (
        not step["errors"]
        and step["ok"] == step["sent"]
        and step["p99"] <= SUSTAINED_P99_MS
        and step["lag_max_ms"] < 100
        and step["throughput"] >= SUSTAINED_SHARE * step["rate"]
    )


def why_not(steps: list[dict]) -> str:
    """Why the first step not sustained was not, for the targets table."""
    for step in steps:
        if sustained_ok(step):
            continue
        reasons = []
        if step["errors"] or step["ok"] != step["sent"]:
            reasons.append(f"{step['sent'] - step['ok']} of {step['sent']} failed")
        if step["p99"] > SUSTAINED_P99_MS:
            reasons.append(f"p99 {fmt(step['p99'], 0)} ms")
        if step["lag_max_ms"] >= 100:
            reasons.append(f"the load generator fell {fmt(step['lag_max_ms'], 0)} ms behind")
        if step["throughput"] < SUSTAINED_SHARE * step["rate"]:
            reasons.append(f"{fmt(step['throughput'], 0)}/s answered")
        return f" (at {fmt(step['rate'], 0)}/s: {', '.join(reasons)})"
    return ""


def sustained_rate(db: dict, key: str = "steps") -> float:
    best = 0.0
    for step in db.get("sustained", {}).get(key, []):
        if not sustained_ok(step):
            break
        best = max(best, step["rate"])
    return best


def ws_size(db: dict, clients: int) -> dict | None:
    for size in db.get("websocket", {}).get("sizes", []):
        if size["clients"] == clients:
            return size
    return None


def target_rows(dbs: dict[str, dict]) -> list[tuple[str, dict[str, str]]]:
    """(target, {db: "value, met / missed by ..."}) for every target of the issue."""
    rows: list[tuple[str, dict[str, str]]] = []

    def limit(value: float | None, bound: float, unit: str, *, lower: bool = True) -> str:
        if value is None or math.isnan(value):
            return "not measured"
        good = value <= bound if lower else value >= bound
        if good:
            return f"{fmt(value)} {unit}: **met**"
        gap = value - bound if lower else bound - value
        return f"{fmt(value)} {unit}: **missed** by {fmt(gap)} {unit}"

    def row(name: str, cell: Any) -> None:
        rows.append((name, {db: cell(data) for db, data in dbs.items()}))

    def sat(field: str) -> Any:
        return lambda d: (phase_at(d, "saturated", 20) or {}).get("tabs", {}).get(field)

    row("Tab creation p50 ≤ 10 ms at 20/s, provisioning saturated",
        lambda d: limit(sat("p50")(d), 10, "ms"))  # fmt: skip
    row("Tab creation p99 ≤ 50 ms at 20/s, provisioning saturated",
        lambda d: limit(sat("p99")(d), 50, "ms"))  # fmt: skip

    def equal(d: dict) -> str:
        a, b = phase_at(d, "saturated", 20), phase_at(d, "instant", 20)
        if not a or not b:
            return "not measured"
        ta, tb = a["tabs"], b["tabs"]
        same = within(ta["p50"], tb["p50"], NOISE_P50) and within(ta["p99"], tb["p99"], NOISE_P99)
        verdict = "**met**" if same else "**missed**"
        return (
            f"p50 {fmt(ta['p50'])} vs {fmt(tb['p50'])} ms, p99 {fmt(ta['p99'])} vs "
            f"{fmt(tb['p99'])} ms: {verdict}"
        )

    row("Saturated equals instant provisioning within noise (20/s)", equal)

    def fanout(clients: int) -> Any:
        return lambda d: (ws_size(d, clients) or {}).get("commit_to_client", {}).get("p99")

    row("Commit-to-client p99 ≤ 50 ms, 10 clients", lambda d: limit(fanout(10)(d), 50, "ms"))
    row("Commit-to-client p99 ≤ 250 ms, 1,000 clients",
        lambda d: limit(fanout(1000)(d), 250, "ms"))  # fmt: skip

    def overhead(d: dict) -> str:
        orch = d.get("orchestration", {})
        parts = []
        for kind, label in (("fresh_task", "new task"), ("ready_task", "ready sandbox")):
            value = orch.get(kind, {}).get("overhead", {}).get("p50")
            parts.append(f"{label}: {limit(value, 20, 'ms')}")
        return "; ".join(parts)

    row("Orchestration overhead p50 ≤ 20 ms", overhead)

    def sustained(d: dict) -> str:
        data = d.get("sustained", {})
        if not data.get("api_only") and not data.get("steps"):
            return "not measured"
        text = f"the API: {limit(sustained_rate(d, 'api_only'), 100, 'tabs/s', lower=False)}"
        steps = data.get("steps", [])
        if steps:
            text += (
                f"; with the workers processing every tab on the same cores: "
                f"{fmt(sustained_rate(d), 0)} tabs/s{why_not(steps)}"
            )
        return text

    row("≥ 100 tabs/s sustained without errors", sustained)

    def per_socket(d: dict) -> float | None:
        return d.get("websocket", {}).get("memory", {}).get("per_socket_kib")

    row("≤ 50 KiB per idle websocket", lambda d: limit(per_socket(d), 50, "KiB"))
    row("One task, 100 concurrent tabs: 1 sandbox",
        lambda d: (f"{d['burst']['sandboxes']} sandbox(es), {d['burst']['tabs']} tabs: "
                   + ("**met**" if d["burst"]["sandboxes"] == 1 else "**missed**"))
        if d.get("burst") else "not measured")  # fmt: skip
    rows += post_cpu_target_rows(dbs)
    return rows


# Issue 16: Daphne's CPU per tab POST against the trivial endpoint's, and the p99 of 100
# concurrent opens of one task, per database.
POST_CPU_RATIO = 3.0
BURST_P99_MS = {"sqlite": 250.0, "postgres": 400.0}


def post_cpu_target_rows(dbs: dict[str, dict]) -> list[tuple[str, dict[str, str]]]:
    def ratio(d: dict) -> str:
        cpu = d.get("post_cpu", {}).get("cpu")
        if not cpu:
            return "not measured"
        post, trivial = cpu["post"]["cpu_ms_per_request"], cpu["trivial"]["cpu_ms_per_request"]
        verdict = "**met**" if cpu["ratio"] <= POST_CPU_RATIO else "**missed**"
        return f"{fmt(post, 2)} vs {fmt(trivial, 2)} ms: {ratio_text(cpu['ratio'])}: {verdict}"

    def p99(db: str, d: dict) -> str:
        burst = d.get("post_cpu", {}).get("burst")
        if not burst:
            return "not measured"
        bound, value = BURST_P99_MS[db], burst["post"]["p99"]
        verdict = "**met**" if value <= bound else f"**missed** by {fmt(value - bound)} ms"
        return f"{fmt(value)} ms (≤ {fmt(bound, 0)}, {burst['tabs']} at once): {verdict}"

    return [
        (
            f"Daphne CPU per tab POST ≤ {POST_CPU_RATIO:g}x the trivial endpoint's",
            {db: ratio(data) for db, data in dbs.items()},
        ),
        (
            "100 concurrent opens in one workspace: p99 ≤ 250 ms (SQLite), ≤ 400 ms (PostgreSQL)",
            {db: p99(db, data) for db, data in dbs.items()},
        ),
    ]


def render(results: dict[str, Any], command: str) -> str:
    machine = results["machine"]
    config = results["config"]
    dbs = {db: data for db, data in results["db"].items() if "error" not in data}
    failed = {db: data["error"] for db, data in results["db"].items() if "error" in data}
    names = [DB_NAMES[db] for db in dbs]
    out: list[str] = ["## Service", ""]
    add = out.append
    add(
        f"Measured with `{command}` (`make bench` runs `bench/service.py`; pass flags with "
        f"`BENCH_ARGS`) on {machine['date']}, at {results.get('revision') or git_revision()}; "
        f"{machine.get('wall_seconds', '?')} s in all."
    )
    add("")
    add(
        f"Machine: {machine['cores']} cores ({machine['cpu']}), {machine['memory_gib']} GiB, "
        f"{machine['platform']}. Python {machine['python']}, Django {machine.get('django')}, "
        f"DRF {machine.get('djangorestframework')}, Celery {machine.get('celery')}, channels "
        f"{machine.get('channels')}, channels-redis {machine.get('channels-redis')}, Daphne "
        f"{machine.get('daphne')}, Twisted {machine.get('twisted')}, psycopg "
        f"{machine.get('psycopg')}, Redis {machine.get('redis')}, SQLite {machine['sqlite']}, "
        f"PostgreSQL {machine.get('postgresql', '-')}, sandbox-agent "
        f"{machine.get('sandbox_agent', '-')}; load generator: httpx {machine.get('httpx')}, "
        f"websockets {machine.get('websockets')}."
    )
    loads = ", ".join(
        f"{DB_NAMES[db]} run {fmt(d['load_before'][0], 2)} → {fmt(d['load_after'][0], 2)}"
        for db, d in dbs.items()
    )
    add(
        f"Load average (1 min) before/after: {loads}. Everything (services, database, "
        "sandbox-agent servers and the load generator) shares these cores."
    )
    if failed:
        add("")
        for db, error in failed.items():
            add(f"**The {DB_NAMES[db]} run failed:** `{error}`")
    add("")
    add("Rerun: `make bench` (both databases), or `.venv/bin/python bench/service.py --db "
        "sqlite` / `--db postgres`; `--smoke` runs every scenario at tiny sizes (CI does, "
        "see `tests/integration/test_bench_service_smoke.py`); `--write ''` skips this file, "
        "`--json out.json` keeps the raw numbers.")  # fmt: skip
    add("")
    add(
        METHOD.format(
            delay=config["slow_delay"],
            users=config["users"],
            ladder_pool=config["ladder_pool"],
            pools=pools_text(results),
        )
    )
    if config.get("worker_nice") is not None:
        add(f"- The Celery workers ran under `nice -n {config['worker_nice']}` (`--worker-nice`).")
    if config.get("priority"):
        add(
            f"- The whole run (services and load generator) ran at niceness "
            f"{config['priority']} (`--priority`), so that other jobs sharing this machine "
            "took only what it left."
        )
    add("")
    add("### Targets (2 cores)")
    add("")
    out += table_head("target", *names)
    for name, cells in target_rows(dbs):
        add(f"| {name} | " + " | ".join(cells[db] for db in dbs) + " |")
    add("")
    out += section_latency(dbs, config)
    out += section_inline(dbs)
    out += section_websocket(dbs, config)
    out += section_orchestration(dbs)
    out += section_sustained(dbs)
    out += section_burst(dbs)
    out += section_waiting(dbs)
    out += section_workspace_size(dbs, config)
    out += section_post_cpu(dbs, config)
    return "\n".join(out).rstrip() + "\n"


METHOD = """\
How it measures (all processes on 127.0.0.1; times across processes are wall-clock times of \
this one machine):
- **Load**: open loop (request *i* leaves at t0 + i/rate whatever earlier responses did; \
latency runs from that scheduled time to the end of the response, so a stalled server is \
not hidden); httpx.AsyncClient; every request counted, any status other than the expected \
one is an error. Tabs are opened by {users} workspace members in turn (each stays under the \
default per-user throttle, which stays on); in scenarios 1 and 2 every tab opens on a fresh \
task (so each is a provisioning run of its own), in 5 round-robin over {ladder_pool} fresh \
tasks per step.
- **Services**: one Daphne (`bench.settings`: the production settings and routes plus \
`/bench/noop/` and `/bench/inline/...`), the Procfile's Celery worker pools ({pools}; fresh \
for each scenario, their queues purged and their sandboxes destroyed after), Redis, \
sandbox-agent servers started by the local provider. SQLite: a temporary file (WAL). PostgreSQL: a \
throwaway cluster (`initdb`, `fsync=off`, `synchronous_commit=off`).
- **Saturated** provisioning: the worker's provider spends {delay:g} s in a recorded \
`simulated_delay` step (`WORKBENCH_LOCAL_PROVISION_DELAY`), priming tabs occupy every \
provisioning worker slot before the first request; "busy slots" is sampled every 0.25 s \
from the running `simulated_delay` steps. \
**Instant**: no delay; the worker provisions and opens sessions for real during the run.
- **Trivial endpoint** (the floor): `GET /bench/noop/`, a DRF view with token \
authentication and nothing else, at the same rate just before each tab phase.
- **Inline variant**: `POST /bench/inline/tasks/{{id}}/tabs/` runs `tab_create`, then \
the task's provisioning run (`sandbox_run`, which calls `tasks_app.services.\
task_provision_run`; requests that find another request's run holding the lease wait for \
it) and `tab_open_session` \
inside the request, with the same {delay:g} s provider, and answers with the ready tab. \
No worker runs meanwhile.
- **Commit-to-client**: N websocket clients (token auth, no compression) on one workspace; \
each event is the placeholder `tab.updated` of a `POST /api/tasks/{{id}}/tabs/`. \
"Commit" is the Event row's `created_at`, set inside the transaction a few hundred \
microseconds before it commits, so the figure slightly overstates the true \
commit-to-client time; POST-to-client (from the moment the request left) is shown too. \
"Last subscriber" is, per event, the arrival at the last of the N clients. The clients run \
in the load generator's single asyncio process, on the same 2 cores.
- **Memory per idle websocket**: Daphne's VmRSS (`/proc/<pid>/status`) after opening the \
largest number of sockets (each has received its snapshot), minus before, divided by the \
number of sockets; measured on a freshly restarted Daphne.
- **Orchestration overhead**: `ready_at` minus the moment the POST left, minus the \
provider's own time: the recorded `ProvisioningStep` durations of the tab's sandbox (new \
tasks) plus the local provider's `create_session` call (timed by a hook `bench.settings` \
installs). **Celery enqueue-to-start**: each message carries its publish time (a \
`before_task_publish` hook), the worker records when the task starts; first deliveries \
only (a retry's countdown is a deliberate wait). The hooks add one Redis RPUSH per task \
and per session."""


def nice_prefix(pool: dict[str, Any]) -> str:
    return f"nice -n {pool['niceness']} … " if pool.get("niceness") else ""


def pools_text(results: dict[str, Any]) -> str:
    for data in results["db"].values():
        if data.get("pools"):
            return ", ".join(
                f"`{p['name']}`: `{nice_prefix(p)}-Q {p['queues'] or '(all)'} "
                f"-c {p['concurrency']}`"
                for p in data["pools"]
            )
    return "as in the Procfile"


def table_head(*columns: str) -> list[str]:
    """A Markdown table's header row and its separator, one column per name."""
    return ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]


def latency_table(dbs: dict, mode: str) -> list[str]:
    out = []
    for db, data in dbs.items():
        for phase in data["tab_latency"][mode]["phases"]:
            tab, floor, busy = phase["tabs"], phase["floor"], phase["busy_slots"]
            busy_text = (
                f"{busy['min']} / {fmt(busy['mean'])}" if busy.get("min") is not None else "-"
            )
            out.append(
                f"| {DB_NAMES[db]} | {fmt(phase['rate'], 0)} | {tab['ok']}/{tab['sent']} | "
                f"{fmt(tab['p50'])} | {fmt(tab['p99'])} | {fmt(tab['max'])} | "
                f"{fmt(floor['p50'])} | {fmt(floor['p99'])} | {fmt(phase['ratio_p50'])}x | "
                f"{fmt(phase['ratio_p99'])}x | {busy_text} | {phase['pending_at_end']} |"
            )
    return out


def section_latency(dbs: dict, config: dict) -> list[str]:
    out = ["### 1. Tab creation latency", ""]
    head = table_head(
        "database",
        "rate /s",
        "ok/sent",
        "p50 ms",
        "p99 ms",
        "max ms",
        "trivial p50 ms",
        "trivial p99 ms",
        "ratio p50",
        "ratio p99",
        "busy provisioning slots min / mean",
        "tabs still pending at the end",
    )
    for mode, title in (
        ("saturated", f"Provisioning saturated and slow ({config['slow_delay']:g} s per run):"),
        ("instant", "Provisioning instant (the worker provisions and opens sessions for real):"),
    ):
        out += [title, "", *head]
        out += latency_table(dbs, mode)
        out.append("")
    return out


def section_inline(dbs: dict) -> list[str]:
    out = [
        "### 2. Inline variant (provisioning inside the request)",
        "",
        *table_head(
            "database",
            "rate /s",
            "ok/sent",
            "ready",
            "p50 ms",
            "p99 ms",
            "max ms",
            "async p50 ms (saturated, same rate)",
            "inline / async p50",
        ),
    ]
    for db, data in dbs.items():
        for phase in data["inline"]["phases"]:
            tab = phase["tabs"]
            async_phase = phase_at(data, "saturated", phase["rate"])
            async_p50 = async_phase["tabs"]["p50"] if async_phase else math.nan
            out.append(
                f"| {DB_NAMES[db]} | {fmt(phase['rate'], 0)} | {tab['ok']}/{tab['sent']} | "
                f"{tab['ready']} | {fmt(tab['p50'], 0)} | {fmt(tab['p99'], 0)} | "
                f"{fmt(tab['max'], 0)} | {fmt(async_p50)} | {fmt(tab['p50'] / async_p50, 0)}x |"
            )
    out.append("")
    return out


def section_websocket(dbs: dict, config: dict) -> list[str]:
    out = [
        "### 3. Commit-to-client latency of a tab event",
        "",
        *table_head(
            "database",
            "clients",
            "events",
            "delivered",
            "commit→client p50 / p99 / max ms",
            "last subscriber p50 / p99 / max ms",
            "POST→client p50 / p99 ms",
        ),
    ]
    for db, data in dbs.items():
        for size in data["websocket"]["sizes"]:
            c, last, post = (
                size["commit_to_client"],
                size["last_subscriber"],
                size["post_to_client"],
            )
            out.append(
                f"| {DB_NAMES[db]} | {size['clients']} | {size['events']} at "
                f"{fmt(size['rate'], 0)}/s | {size['delivered']}/{size['expected']} | "
                f"{fmt(c['p50'])} / {fmt(c['p99'])} / {fmt(c['max'])} | {fmt(last['p50'])} / "
                f"{fmt(last['p99'])} / {fmt(last['max'])} | {fmt(post['p50'])} / "
                f"{fmt(post['p99'])} |"
            )
    out += ["", "Memory per idle websocket (Daphne VmRSS):", ""]
    out += table_head(
        "database",
        "sockets",
        "RSS before MiB",
        "RSS after MiB",
        "per socket KiB",
        "time to open them s",
    )
    for db, data in dbs.items():
        m = data["websocket"]["memory"]
        out.append(
            f"| {DB_NAMES[db]} | {m['sockets']} | {fmt(m['rss_before_kib'] / 1024)} | "
            f"{fmt(m['rss_after_kib'] / 1024)} | {fmt(m['per_socket_kib'])} | "
            f"{fmt(m['connect_seconds'])} |"
        )
    out.append("")
    return out


def section_orchestration(dbs: dict) -> list[str]:
    out = [
        "### 4. Orchestration overhead and Celery wait",
        "",
        "POST-to-ready minus the provider's own time, on an idle worker with the instant "
        "provider, tabs alternating between a new task and a task whose sandbox is ready:",
        "",
        *table_head(
            "database",
            "tab on",
            "n",
            "POST→ready p50 ms",
            "provider p50 ms",
            "overhead p50 / p99 / max ms",
        ),
    ]
    for db, data in dbs.items():
        orch = data["orchestration"]
        for kind, label in (("fresh_task", "new task"), ("ready_task", "ready sandbox")):
            row = orch.get(kind, {})
            if not row:
                continue
            o = row["overhead"]
            out.append(
                f"| {DB_NAMES[db]} | {label} | {o['n']} | {fmt(row['post_to_ready']['p50'])} | "
                f"{fmt(row['provider']['p50'])} | {fmt(o['p50'])} / {fmt(o['p99'])} / "
                f"{fmt(o['max'])} |"
            )
    out += ["", "Where the overhead goes (medians, ms):", ""]
    parts = [
        ("post_to_row", "POST sent → tab row inserted"),
        ("row_to_first_task", "row → first Celery task starts"),
        ("task_start_to_first_step", "task start → first provider step"),
        ("between_steps", "between provider steps (recording them)"),
        ("last_step_to_session_task", "last step → session task starts"),
        ("session_task_to_call", "session task → provider call"),
        ("call_to_ready", "provider call returns → ready_at"),
    ]
    heads = [f"{DB_NAMES[db]} {label}" for db in dbs for label in ("new task", "ready sandbox")]
    out += table_head("step", *heads)
    for key, label in parts:
        cells = []
        for data in dbs.values():
            for kind in ("fresh_task", "ready_task"):
                cells.append(fmt(data["orchestration"].get(kind, {}).get(key, {}).get("p50")))
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    out += ["", "Celery enqueue-to-start (first deliveries):", ""]
    out += table_head("database", "scenario", "task", "n", "p50 ms", "p99 ms", "max ms")
    for db, data in dbs.items():
        sources = [
            ("idle worker (above)", data["orchestration"]["celery"]),
            ("provisioning saturated (1.)", data["tab_latency"]["saturated"]["celery"]),
            ("provisioning instant (1.)", data["tab_latency"]["instant"]["celery"]),
        ]
        for label, waits in sources:
            for task, s in waits.items():
                out.append(
                    f"| {DB_NAMES[db]} | {label} | `{task}` | {s['n']} | {fmt(s['p50'])} | "
                    f"{fmt(s['p99'])} | {fmt(s['max'])} |"
                )
    out += ["", "A worker's `ready` event to one websocket client (commit→client):", ""]
    for db, data in dbs.items():
        s = data["orchestration"]["worker_event_to_client"]
        out.append(
            f"- {DB_NAMES[db]}: p50 {fmt(s['p50'])} ms, p99 {fmt(s['p99'])} ms (n = {s['n']})"
        )
    out.append("")
    return out


def section_burst(dbs: dict) -> list[str]:
    out = [
        "### 6. One task opened with many concurrent tabs",
        "",
        *table_head(
            "database",
            "tabs",
            "sandboxes",
            "`start_server` steps",
            "POST p50 / p99 ms",
            "sandbox ready s",
            "first tab ready s",
            "all ready s",
            "provisioning runs (incl. duplicates)",
        ),
    ]
    for db, data in dbs.items():
        b = data["burst"]
        out.append(
            f"| {DB_NAMES[db]} | {b['tabs']} | {b['sandboxes']} | {b['start_server_steps']} | "
            f"{fmt(b['post']['p50'])} / {fmt(b['post']['p99'])} | {fmt(b['sandbox_ready_s'], 2)}"
            f" | {fmt(b['first_ready_s'], 2)} | {fmt(b['all_ready_s'], 2)} | "
            f"{b['provision_task_runs']} |"
        )
    out.append("")
    return out


def section_waiting(dbs: dict) -> list[str]:
    out = [
        "### 7. Tabs waiting on one slow provisioning run",
        "",
        "Tabs opened at once on one new task whose provisioning takes the stated time; every "
        "Celery task execution of the run is counted (the target: at most 3 per tab). Before "
        "the task-owned run, each waiting tab re-queued itself every 0.25 s: about 80 "
        "executions per tab for 20 s.",
        "",
        *table_head(
            "database",
            "tabs (ready)",
            "provisioning s",
            "sandboxes",
            "Celery executions",
            "per tab",
            "by task",
        ),
    ]
    for db, data in dbs.items():
        w = data.get("waiting")
        if not w:
            continue
        by_task = ", ".join(f"{name} {n}" for name, n in sorted(w["by_task"].items()))
        out.append(
            f"| {DB_NAMES[db]} | {w['tabs']} ({w['ready']}) | {fmt(w['delay'], 0)}"
            f" | {w['sandboxes']} | {w['executions']} | {fmt(w['per_tab'], 2)} | {by_task} |"
        )
    out.append("")
    return out


def section_sustained(dbs: dict) -> list[str]:
    out = [
        "### 5. Sustained tab creations",
        "",
        "A rising ladder of open-loop rates (stopping at the first rate not sustained), first "
        "with no worker consuming (the API alone), then with the worker pools provisioning and "
        "opening sessions for every tab on the same cores and database. Sustained = every "
        f"request 201, p99 ≤ {SUSTAINED_P99_MS:.0f} ms, answers at ≥ {SUSTAINED_SHARE:.0%} of "
        "the offered rate, the generator on schedule.",
        "",
        *table_head(
            "database",
            "workers",
            "offered /s",
            "ok/sent",
            "errors",
            "achieved /s",
            "p50 ms",
            "p99 ms",
            "max ms",
        ),
    ]
    for db, data in dbs.items():
        for key, label in (("api_only", "none"), ("steps", "processing")):
            for step in data["sustained"].get(key, []):
                errors = ", ".join(f"{k}: {v}" for k, v in step["errors"].items()) or "0"
                out.append(
                    f"| {DB_NAMES[db]} | {label} | {fmt(step['rate'], 0)} | "
                    f"{step['ok']}/{step['sent']} | {errors} | {fmt(step['throughput'], 0)} | "
                    f"{fmt(step['p50'])} | {fmt(step['p99'])} | {fmt(step['max'])} |"
                )
    out.append("")
    for db, data in dbs.items():
        s = data["sustained"]
        out.append(
            f"- {DB_NAMES[db]}: **{fmt(sustained_rate(data), 0)} tabs/s sustained** with the "
            f"workers processing ({fmt(sustained_rate(data, 'api_only'), 0)} tabs/s by the API "
            f"alone); meanwhile the workers made {s['ready_during_ladder']} of the "
            f"{s['created_during_ladder']} tabs ready in {fmt(s['ladder_seconds'], 0)} s."
        )
    out.append("")
    return out


def thousands(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def ratio_text(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.2f}x"


def closes_text(row: dict) -> str:
    """`n (1011: k)`: connects that ended in a close instead of a snapshot, by code."""
    if not row["closed"]:
        return "0"
    return f"{row['closed']} (" + ", ".join(f"{c}: {n}" for c, n in row["closes"].items()) + ")"


WORKSPACE_SIZE_INTRO = """\
Workspaces written directly (bulk_create): {small} tasks with one open tab each; {tasks:,} \
tasks, each with a sandbox and its recorded steps (most ready, one in 20 failed, one in 20 \
provisioning, one in 10 with an older destroyed attempt), and a few tabs; {tab_total:,} open \
tabs over {tab_tasks} tasks. Per workspace, up to {connects} sequential websocket connects \
(token auth) of a member: from the start of the connect to the first `snapshot` frame; a \
connect ends instead at a close (Daphne closes with 1011 when the application fails, e.g. on \
a frame over its 1 MiB limit) or after {timeout:g} s, and no further connect starts once a \
workspace's connects have taken {budget:g} s. Queries, build time and JSON size of \
`workbench.selectors.workbench_snapshot` are measured in the load generator's process \
(`CaptureQueriesContext`)."""


def section_workspace_size(dbs: dict, config: dict) -> list[str]:
    measured = {
        db: data["workspace_size"] for db, data in dbs.items() if data.get("workspace_size")
    }
    if not measured:
        return []
    out = [
        "### 9. Workspaces of any size",
        "",
        WORKSPACE_SIZE_INTRO.format(
            small=config["size_small_tasks"],
            tasks=config["size_tasks"],
            tab_total=config["size_tab_tasks"] * config["size_tabs_per_task"],
            tab_tasks=config["size_tab_tasks"],
            connects=config["size_connects"],
            timeout=config["size_connect_timeout"],
            budget=config["size_connect_budget"],
        ),
        "",
        *table_head(
            "database",
            "workspace",
            "tasks",
            "open tabs",
            "snapshots / connects",
            "closed instead (by code)",
            "timed out",
            "connect→snapshot p50 / p99 ms",
            "connect→end p50 ms",
            "frame bytes",
            "snapshot JSON bytes",
            "tasks / tabs in it",
            "queries",
            "built in ms",
        ),
    ]
    labels = {"small": "small", "tasks": "many tasks", "tabs": "many open tabs"}
    for db, ws in measured.items():
        for key, label in labels.items():
            row = ws["workspaces"][key]
            c, snap = row["connect_to_snapshot"], row["snapshot"]
            out.append(
                f"| {DB_NAMES[db]} | {label} | {row['tasks']:,} | {row['open_tabs']:,} | "
                f"{row['snapshots']} / {row['connects']} | {closes_text(row)} | "
                f"{row['timeouts']} | {fmt(c['p50'])} / {fmt(c['p99'])} | "
                f"{fmt(row['connect_to_outcome']['p50'])} | {thousands(row['frame_bytes'])} | "
                f"{snap['bytes']:,} | {snap['tasks']:,} / {snap['tabs']:,} | {snap['queries']} | "
                f"{fmt(snap['build_ms'], 0)} |"
            )
    out += ["", "Each large workspace over the small one, same run:", ""]
    out += table_head(
        "database",
        "workspace",
        "connect→snapshot p50",
        "p99",
        "connect→end p50",
        "snapshot JSON bytes",
        "queries",
    )
    for db, ws in measured.items():
        for key in ("tasks", "tabs"):
            r = ws["ratios"][key]
            out.append(
                f"| {DB_NAMES[db]} | {labels[key]} | {ratio_text(r['p50'])} | "
                f"{ratio_text(r['p99'])} | {ratio_text(r['outcome_p50'])} | "
                f"{ratio_text(r['bytes'])} | {ratio_text(r['queries'])} |"
            )
    out += [
        "",
        "REST lists, first page only (cursor pages: a JSON array, `Link` for the next), "
        f"{config['size_rest_requests']} sequential GETs of each, small and large alternating:",
        "",
        *table_head(
            "database",
            "list",
            "rows",
            "p50 / p99 ms",
            "body bytes",
            "items",
            "next link",
            "large / small p50",
            "large / small bytes",
        ),
    ]
    names = {
        "tasks": "`GET /api/workspaces/{id}/tasks/`",
        "closed_tabs": "`GET /api/tasks/{id}/tabs/?include_closed=1` (closed tabs)",
    }
    for db, ws in measured.items():
        for key, name in names.items():
            pair = ws["rest"][key]
            for size in ("small", "large"):
                row = pair[size]
                ratios = (
                    f"{ratio_text(pair['p50_ratio'])} | {ratio_text(pair['bytes_ratio'])}"
                    if size == "large"
                    else " | "
                )
                out.append(
                    f"| {DB_NAMES[db]} | {name} | {row['rows']:,} | "
                    f"{fmt(row['latency']['p50'])} / {fmt(row['latency']['p99'])} | "
                    f"{row['bytes']:,} | {row['items']} | {'yes' if row['next_link'] else 'no'}"
                    f" | {ratios} |"
                )
    first = next(iter(measured.values()))["member"]
    out += [
        "",
        f'Another member on the small workspace: pings (`{{"type": "ping"}}` → `pong`) at '
        f"{config['size_ping_rate']:g}/s for {config['size_ping_seconds']:g} s and their own "
        f"connects meanwhile, idle, then while the first member reconnects to the "
        f"{config['size_tasks']:,}-task workspace (from a separate process): *paced*, once "
        f"every {first['paced']['interval']:g} s (as often as the default per-user connect "
        f"limit of 60/min lets a member), and *flood*, {first['flood']['loops']} loops back "
        "to back (the bench lifts that limit):",
        "",
        *table_head(
            "database",
            "condition",
            "pongs / pings",
            "ping round trip p50 / p99 ms",
            "member's connect→snapshot p50 / p99 ms (n)",
            "first member's reconnects: snapshots / connects, closed, timed out; unfinished",
        ),
    ]
    for db, ws in measured.items():
        member = ws["member"]
        for condition in ("idle", "paced", "flood"):
            phase = member[condition] if condition == "idle" else member[condition]["loaded"]
            ping, conn = phase["ping"], phase["connect"]["connect_to_snapshot"]
            loop_text = "-"
            if condition != "idle":
                r = member[condition]["reconnects"]
                loop_text = (
                    f"{r['snapshots']} / {r['connects']}, {closes_text(r)}, {r['timeouts']}; "
                    f"{r.get('unfinished', '-')}"
                )
            out.append(
                f"| {DB_NAMES[db]} | {condition} | {ping['pongs']} / {ping['sent']} | "
                f"{fmt(ping['rtt']['p50'])} / {fmt(ping['rtt']['p99'])} | {fmt(conn['p50'])} / "
                f"{fmt(conn['p99'])} ({conn['n']}) | {loop_text} |"
            )
    out.append("")
    for db, ws in measured.items():
        for condition in ("paced", "flood"):
            row = ws["member"][condition]
            out.append(
                f"- {DB_NAMES[db]}, {condition} / idle: ping round trip p50 "
                f"{ratio_text(row['rtt_p50_ratio'])}, p99 {ratio_text(row['rtt_p99_ratio'])}; "
                f"the member's connect p99 {ratio_text(row['connect_p99_ratio'])}."
            )
    out.append("")
    return out


POST_CPU_INTRO = """\
Daphne's CPU time (utime + stime of `/proc/<pid>/stat`, every thread, summed over the Daphne \
process(es) the stack started) per request, with no worker running: {requests} tab POSTs \
(`POST /api/tasks/{{id}}/tabs/` with `{{}}`, round-robin over {tasks} fresh tasks and the \
members) and {requests} `GET /bench/noop/` (token auth and nothing else), {in_flight} in \
flight at a time on kept-alive connections, alternating in {rounds} chunks of each after \
{warmup} unmeasured requests of each (each task's first tab, which creates its sandbox row, \
is among those). CPU is read before a chunk and {settle:g} s after its last response (work \
a request leaves behind is counted); Daphne's idle CPU rate, measured over {idle:g} s \
before the chunks, is shown, not subtracted (`/proc` counts 10 ms clock ticks: one tick \
in {idle:g} s reads as {tick:g} ms/s). "Share of a core" is the CPU over the chunks' busy \
time (near 1: Daphne was CPU-bound, and wall times include queueing). Wall times are per \
request, from send to the end of the response."""


def section_post_cpu(dbs: dict, config: dict) -> list[str]:
    measured = {db: data["post_cpu"] for db, data in dbs.items() if data.get("post_cpu")}
    if not measured:
        return []
    out = [
        "### 10. Tab POST CPU and concurrent opens",
        "",
        POST_CPU_INTRO.format(
            requests=config["cpu_requests"],
            tasks=config["cpu_tasks"],
            in_flight=config["cpu_in_flight"],
            rounds=config["cpu_rounds"],
            warmup=config["cpu_warmup"],
            settle=config["cpu_settle"],
            idle=config["cpu_idle_seconds"],
            tick=10 / config["cpu_idle_seconds"] if config["cpu_idle_seconds"] else math.nan,
        ),
        "",
        *table_head(
            "database",
            "request",
            "ok/sent",
            "Daphne CPU ms per request",
            "per chunk min / max",
            "share of a core",
            "requests/s",
            "wall p50 / p99 ms",
            "POST / trivial CPU",
            "idle CPU ms/s",
        ),
    ]
    for db, data in measured.items():
        cpu = data["cpu"]
        for kind, label in (("post", "tab POST"), ("trivial", "trivial GET")):
            row = cpu[kind]
            chunks = row["cpu_ms_per_request_chunks"]
            spread = f"{fmt(min(chunks), 2)} / {fmt(max(chunks), 2)}" if chunks else "-"
            ok = row["requests"] - sum(row["errors"].values())
            out.append(
                f"| {DB_NAMES[db]} | {label} | {ok}/{row['requests']} | "
                f"{fmt(row['cpu_ms_per_request'], 2)} | {spread} | "
                f"{fmt(row['cpu_share_of_a_core'], 2)} | {fmt(row['requests_per_s'], 0)} | "
                f"{fmt(row['wall']['p50'])} / {fmt(row['wall']['p99'])} | "
                + (f"{ratio_text(cpu['ratio'])} | " if kind == "post" else " | ")
                + (f"{fmt(cpu['idle_cpu_ms_per_s'], 1)} |" if kind == "post" else " |")
            )
    burst = next(iter(measured.values()))["burst"]
    out += [
        "",
        f"Concurrent opens: {len(burst['rounds'])} burst(s) of {burst['tabs']} tab POSTs sent "
        f"at {fmt(burst['rate'], 0)}/s (open loop: all in flight at once), each on a fresh "
        "task of the one bench workspace, by the members in turn, with the worker pools up "
        "(warmed, instant provider) provisioning the task meanwhile; the workers carry every "
        "tab to ready before the next burst. Latency from the scheduled send to the end of "
        "the response (each request on a new connection), every burst's POSTs together; "
        "the floor: as many `GET /bench/noop/` sent the same way just before each burst. "
        "Daphne's CPU per POST from the first send to the last response (the workers' first "
        "events reach its fan-out meanwhile).",
        "",
        *table_head(
            "database",
            "bursts x tabs",
            "ok/sent",
            "POST p50 / p99 / max ms",
            "trivial p50 / p99 / max ms",
            "POST p99 per burst ms",
            "burst answered in s",
            "Daphne CPU ms per POST",
            "target p99",
        ),
    ]
    for db, data in measured.items():
        b = data["burst"]
        rounds, post, floor = b["rounds"], b["post"], b.get("trivial", {})
        sent = sum(r["sent"] for r in rounds)
        ok = sum(r["ok"] for r in rounds)
        bound = BURST_P99_MS[db]
        verdict = "met" if post["p99"] <= bound else "missed"
        out.append(
            f"| {DB_NAMES[db]} | {len(rounds)} x {b['tabs']} | {ok}/{sent} | "
            f"{fmt(post['p50'])} / {fmt(post['p99'])} / {fmt(post['max'])} | "
            f"{fmt(floor.get('p50'))} / {fmt(floor.get('p99'))} / {fmt(floor.get('max'))} | "
            + ", ".join(fmt(r["p99"]) for r in rounds)
            + " | "
            + ", ".join(fmt(r["elapsed_s"], 2) for r in rounds)
            + " | "
            + ", ".join(fmt(r["cpu_ms_per_post"], 2) for r in rounds)
            + f" | ≤ {fmt(bound, 0)} ms: **{verdict}** |"
        )
    out.append("")
    for db, data in measured.items():
        if data.get("warning"):
            out.append(f"- {DB_NAMES[db]}: {data['warning']}.")
    return out
