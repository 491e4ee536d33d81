"""Benchmarks are not timed tests: this only checks that the service benchmark's harness
runs every scenario end to end (real Daphne, Celery, Redis, sandbox-agent) and reports each
section. No assertion looks at a number."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.stack import postgres_bin_dir

# The benchmark starts its own SQLite and PostgreSQL stacks; under `make test-postgres` the
# environment's DATABASE_URL would leak into its SQLite stack. The SQLite run covers it.
pytestmark = pytest.mark.skipif(
    bool(os.environ.get("DATABASE_URL")), reason="run by `make test` (SQLite), not again"
)

ROOT = Path(__file__).resolve().parents[2]
SECTIONS = [
    "## Service",
    "### Targets (2 cores)",
    "### 1. Tab creation latency",
    "### 2. Inline variant",
    "### 3. Commit-to-client latency",
    "Memory per idle websocket",
    "### 4. Orchestration overhead",
    "Celery enqueue-to-start",
    "### 5. Sustained tab creations",
    "### 6. One task opened with many concurrent tabs",
]
SCENARIOS = ["tab_latency", "inline", "websocket", "orchestration", "burst", "sustained"]


def test_the_service_benchmark_smoke_run_completes_and_reports_every_section(tmp_path):
    # PostgreSQL too where it is installed (CI without it checks the SQLite run only).
    dbs = "sqlite,postgres" if postgres_bin_dir() is not None else "sqlite"
    out, raw = tmp_path / "benchmarks.md", tmp_path / "results.json"
    existing = "# Benchmarks\n\n## Channel layers\n\nkept as it is\n"
    out.write_text(existing)
    argv = [sys.executable, "bench/service.py", "--smoke", "--db", dbs,
            "--write", str(out), "--json", str(raw)]  # fmt: skip
    result = subprocess.run(
        argv,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = out.read_text()
    for section in SECTIONS:
        assert section in report, section
    assert "## Channel layers\n\nkept as it is" in report  # other sections survive
    results = json.loads(raw.read_text())
    for db in dbs.split(","):
        data = results["db"][db]
        assert "error" not in data, data.get("error")
        for scenario in SCENARIOS:
            assert scenario in data, (db, scenario)
