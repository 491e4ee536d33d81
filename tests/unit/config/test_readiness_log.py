"""A failing readiness check is logged once per outage, not at every probe."""

from __future__ import annotations

import logging

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
