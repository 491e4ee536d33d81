"""Prometheus metrics of the workflow, at /metrics.

Most come from the database at scrape time (tabs and sandboxes by state, time to ready,
step durations), so they are the same whichever process is scraped and survive restarts.
Reconciler actions are counted in Redis (shared by every worker); websocket connections
are per Daphne process (each process serves its own scrape), labelled by host and pid.
"""

from __future__ import annotations

import hmac
import os
import socket
from typing import TYPE_CHECKING

from django.conf import settings
from django.db.models import Aggregate, Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.http import Http404, HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from core.models import Workspace
from sandboxes.models import ProvisioningStep, Sandbox, SandboxState
from workbench.models import TabState, WorkbenchTab

if TYPE_CHECKING:
    from collections.abc import Iterator

READY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
STEP_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
RECONCILER_KEY = "workbench:metrics:reconciler"

WEBSOCKETS = Gauge(
    "workbench_websocket_connections",
    "Open workbench websocket connections of this Daphne process.",
    ["host", "pid"],
)


def websocket_opened() -> None:
    WEBSOCKETS.labels(socket.gethostname(), str(os.getpid())).inc()


def websocket_closed() -> None:
    WEBSOCKETS.labels(socket.gethostname(), str(os.getpid())).dec()


def reconciler_counted(**actions: int) -> None:
    """Add the reconciler's actions to the shared counters (best effort)."""
    import redis

    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1)
        with client.pipeline() as pipe:
            for action, amount in actions.items():
                if amount:
                    pipe.hincrby(RECONCILER_KEY, action, amount)
            pipe.execute()
    except redis.RedisError:
        pass


def _histogram(
    name: str, doc: str, durations: dict[str, dict], buckets: tuple, label: str | None = None
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=[label] if label else None)
    for key, row in durations.items():
        cumulative = [(str(le), row[f"le_{i}"]) for i, le in enumerate(buckets)]
        cumulative.append(("+Inf", row["count"]))
        family.add_metric([key] if label else [], cumulative, sum_value=row["sum"] or 0.0)
    return family


def _duration_rows(queryset, start: str, end: str, buckets: tuple, group: str | None) -> dict:
    """Cumulative bucket counts, count and sum of (end - start), in one aggregate query."""
    duration = ExpressionWrapper(F(end) - F(start), output_field=DurationField())
    rows = queryset.filter(**{f"{end}__isnull": False}).annotate(d=duration)
    aggregates: dict[str, Aggregate] = {
        f"le_{i}": Count("pk", filter=Q(d__lte=_seconds(le))) for i, le in enumerate(buckets)
    }
    aggregates.update(count=Count("pk"), total=Sum("d"))
    if group:
        found = {r[group]: r for r in rows.values(group).annotate(**aggregates).order_by(group)}
    else:
        found = {"": rows.aggregate(**aggregates)}
    for row in found.values():
        row["sum"] = row["total"].total_seconds() if row["total"] else 0.0
    return found


def _seconds(value: float):
    from datetime import timedelta

    return timedelta(seconds=value)


class WorkflowCollector:
    """Reads the workflow's state from the database at each scrape."""

    def describe(self) -> list:
        # Without it, REGISTRY.register() calls collect() at import: a database query while
        # URLs load, which fails before migrations (e.g. `manage.py migrate` on a new DB).
        return []

    def collect(self) -> Iterator:
        tabs = GaugeMetricFamily("workbench_tabs", "Tabs by state.", labels=["state"])
        counts = dict(WorkbenchTab.objects.values_list("state").annotate(n=Count("pk")))
        for state in TabState:
            tabs.add_metric([state.value], counts.get(state.value, 0))
        yield tabs

        sandboxes = GaugeMetricFamily(
            "workbench_sandboxes", "Sandboxes by state.", labels=["state"]
        )
        counts = dict(Sandbox.objects.values_list("state").annotate(n=Count("pk")))
        for sandbox_state in SandboxState:
            sandboxes.add_metric([sandbox_state.value], counts.get(sandbox_state.value, 0))
        yield sandboxes

        yield _histogram(
            "workbench_tab_time_to_ready_seconds",
            "From opening a tab to its ready state (tabs that got there on their first attempt).",
            _duration_rows(
                WorkbenchTab.objects.filter(attempt=1),
                "created_at",
                "ready_at",
                READY_BUCKETS,
                None,
            ),
            READY_BUCKETS,
        )
        yield _histogram(
            "workbench_provisioning_step_duration_seconds",
            "Duration of each provisioning step.",
            _duration_rows(
                ProvisioningStep.objects.all(), "started_at", "finished_at", STEP_BUCKETS, "name"
            ),
            STEP_BUCKETS,
            label="step",
        )

        events = CounterMetricFamily("workbench_events", "Events recorded, all workspaces.")
        events.add_metric([], sum(Workspace.objects.values_list("event_seq", flat=True)))
        yield events

        actions = CounterMetricFamily(
            "workbench_reconciler_actions", "What the reconciler did.", labels=["action"]
        )
        for action, amount in _reconciler_counts().items():
            actions.add_metric([action], amount)
        yield actions


def _reconciler_counts() -> dict[str, int]:
    import redis

    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1)
        raw = client.hgetall(RECONCILER_KEY)
    except redis.RedisError:
        raw = {}
    counts = {"redriven": 0, "failed": 0, "prompts": 0}
    counts.update({(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()})
    return counts


REGISTRY.register(WorkflowCollector())


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text format, behind WORKBENCH_METRICS_TOKEN (Bearer).

    The counts span every tenant, so with no token configured nothing is served (404, as
    for any unknown route) unless WORKBENCH_METRICS_PUBLIC opens it on purpose.
    """
    token = settings.WORKBENCH_METRICS_TOKEN
    if not token and not settings.WORKBENCH_METRICS_PUBLIC:
        raise Http404("metrics are not served without WORKBENCH_METRICS_TOKEN")
    if token and not _bearer_matches(request, token):
        response = HttpResponse(
            "metrics need the bearer token\n", status=401, content_type="text/plain"
        )
        response["WWW-Authenticate"] = "Bearer"
        return response
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)


def _bearer_matches(request: HttpRequest, token: str) -> bool:
    # Constant time: a byte-by-byte comparison would leak how much of a guess was right.
    given = request.headers.get("Authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
