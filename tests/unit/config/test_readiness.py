"""Readiness (config/health.py): a failing check is logged once per outage, not at every
probe, and one check runs at a time, a probe meanwhile getting the last answer."""

from __future__ import annotations

import json
import logging
import time

from config import health


def test_a_failing_check_is_logged_when_it_fails_and_when_it_passes_again(caplog):
    caplog.set_level(logging.INFO, logger="config.health")
    health._failing.clear()
    answers = [health._failed("redis", ConnectionError("refused")) for _ in range(3)]
    assert answers == ["error: ConnectionError"] * 3
    assert health._failed("worker", "no worker answered") == "error: no worker answered"
    assert health._passed("redis") == "ok"
    assert health._passed("redis") == "ok"
    health._failed("redis", ConnectionError("refused again"))
    assert [r.getMessage() for r in caplog.records] == [
        "readiness: the redis check fails: ConnectionError('refused')",
        "readiness: the worker check fails: 'no worker answered'",
        "readiness: the redis check passes again",
        "readiness: the redis check fails: ConnectionError('refused again')",
    ]
    health._failing.clear()


def test_a_probe_while_a_check_runs_gets_the_last_answer_at_once(rf, monkeypatch):
    def no_second_check() -> dict[str, str]:
        raise AssertionError("a second check ran beside the first")

    monkeypatch.setattr(health, "_check", no_second_check)
    monkeypatch.setattr(health, "_last", ({"database": "ok", "worker": "ok"}, True))
    monkeypatch.setattr(health, "_check_started", time.monotonic())
    with health._checking:  # another request thread's check, waiting out its ping
        response = health.readyz(rf.get("/readyz"))
    assert response.status_code == 200
    assert json.loads(response.content)["checks"] == {"database": "ok", "worker": "ok"}


def test_a_check_that_runs_too_long_does_not_keep_the_last_200_standing(rf, monkeypatch):
    monkeypatch.setattr(health, "_last", ({"database": "ok", "worker": "ok"}, True))
    started = time.monotonic() - health.LAST_ANSWERS_FOR - 1  # say, a database gone quiet
    monkeypatch.setattr(health, "_check_started", started)
    with health._checking:
        response = health.readyz(rf.get("/readyz"))
    assert response.status_code == 503
    assert json.loads(response.content)["checks"] == {"check": "error: running for 4 s"}


def test_before_any_answer_a_probe_beside_the_first_check_is_not_ready(rf, monkeypatch):
    monkeypatch.setattr(health, "_last", None)
    monkeypatch.setattr(health, "_check_started", time.monotonic())
    with health._checking:
        response = health.readyz(rf.get("/readyz"))
    assert response.status_code == 503


def test_a_probe_with_no_check_running_checks(rf, monkeypatch):
    monkeypatch.setattr(health, "_check", lambda: {"database": "ok", "worker": "error: x"})
    monkeypatch.setattr(health, "_last", ({"database": "ok", "worker": "ok"}, True))
    response = health.readyz(rf.get("/readyz"))
    assert response.status_code == 503
    assert health._last == ({"database": "ok", "worker": "error: x"}, False)
