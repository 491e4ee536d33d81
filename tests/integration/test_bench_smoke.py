"""Benchmarks are not timed tests: this only checks that the harness runs and reports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_channel_layer_benchmark_runs_and_writes_its_table(tmp_path):
    out = tmp_path / "benchmarks.md"
    result = subprocess.run(
        [
            sys.executable,
            "bench/channel_layers.py",
            "--events",
            "5",
            "--sizes",
            "1,3",
            "--write",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "received=5/5" in result.stdout and "received=15/15" in result.stdout
    table = out.read_text()
    assert "| RedisPubSubChannelLayer | 3 | 15/15 |" in table
    assert "Choice:" in table
