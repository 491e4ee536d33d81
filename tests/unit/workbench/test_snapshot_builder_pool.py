"""The builder processes' pool (workbench/snapshots.py), with real spawned builders: a build
runs in another process, a refusal crosses back as NotMember, a builder that dies
mid-build is replaced and the build tried once more, and readiness waits for every builder
and replaces one found dead."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
from collections.abc import Iterator

import pytest

from tests.helpers import wait_until
from tests.support import builder_jobs
from workbench import snapshots


@pytest.fixture
def builders(settings) -> Iterator[None]:
    settings.WORKBENCH_SNAPSHOT_PROCESSES = 1
    yield
    pool = snapshots._builders
    snapshots._builders = None
    snapshots._started = False
    snapshots._restarts = snapshots._Restarts()
    if pool is not None:
        pool.executor.shutdown(wait=True, cancel_futures=True)


def test_a_build_runs_in_a_builder_and_a_refusal_comes_back_as_not_member(builders):
    built_by = asyncio.run(snapshots._in_turn(7, builder_jobs.pid))
    assert built_by != os.getpid()
    with pytest.raises(snapshots.NotMember):
        asyncio.run(snapshots._in_turn(7, builder_jobs.refuse, 7))
    assert asyncio.run(snapshots._in_turn(7, builder_jobs.pid)) == built_by  # kept


def test_a_builder_dying_mid_build_is_replaced_and_the_build_done(builders, tmp_path):
    first = asyncio.run(snapshots._in_turn(7, builder_jobs.pid))
    text = asyncio.run(snapshots._in_turn(7, builder_jobs.die_once, str(tmp_path / "died")))
    assert (tmp_path / "died").exists()  # the first try killed its builder
    assert text.startswith("built by ") and text != f"built by {first}"


def ready_builder() -> int:
    """Once readiness says "ok": the pid of the pool's one builder."""
    wait_until(lambda: snapshots.builders_check() == "ok", timeout=60, message="never ready")
    pool = snapshots._builders
    assert pool is not None and len(pool.ready) == 1
    return next(iter(pool.ready))


def test_without_builders_readiness_has_nothing_to_say(settings):
    settings.WORKBENCH_SNAPSHOT_PROCESSES = 0
    assert snapshots.builders_check() is None
    assert snapshots._builders is None  # nor did asking spawn any


def test_a_process_that_never_started_builders_has_none_to_report(builders):
    # Say `runserver` answering /readyz: asking does not spawn interpreters.
    assert snapshots.builders_check() is None
    assert snapshots._builders is None


def test_readiness_waits_for_the_builder_it_started(builders):
    snapshots.start_builders()
    # A builder's interpreter and Django take ~1 s to start: not there yet.
    assert snapshots.builders_check() == "starting"
    pid = ready_builder()
    assert pid != os.getpid()
    assert asyncio.run(snapshots._in_turn(7, builder_jobs.pid)) == pid  # the one that builds


def test_a_builder_that_died_after_it_started_is_replaced_by_readiness(builders):
    snapshots.start_builders()
    first = ready_builder()
    os.kill(first, signal.SIGKILL)  # as the OOM killer would, with no build to notice
    wait_until(lambda: first not in {child.pid for child in multiprocessing.active_children()})
    assert snapshots.builders_check() == "starting"  # not "ok" on a dead builder
    second = ready_builder()
    assert second != first
    assert asyncio.run(snapshots._in_turn(7, builder_jobs.pid)) == second


def test_a_builder_that_died_while_starting_is_replaced_by_readiness(builders):
    snapshots.start_builders()
    starting = {child.pid for child in multiprocessing.active_children()}
    assert starting  # spawned at once
    for pid in starting:
        os.kill(pid, signal.SIGKILL)
    assert snapshots.builders_check() == "starting"
    assert ready_builder() not in starting


def kill_children() -> set[int]:
    """SIGKILL the builders, once the pool has seen them die (its start jobs failed)."""
    children = {child.pid for child in multiprocessing.active_children()}
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not {c.pid for c in multiprocessing.active_children()} & children)
    pool = snapshots._builders
    assert pool is not None
    wait_until(lambda: all(f.done() for f in pool.spawns), message="the pool missed a death")
    return children


def test_builders_that_keep_dying_are_replaced_ever_more_slowly_then_reported(builders):
    snapshots.start_builders()
    kill_children()
    assert snapshots.builders_check() == "starting"  # replaced at once
    assert multiprocessing.active_children()
    kill_children()  # the replacement dies too, within a second
    assert snapshots.builders_check() == "starting"
    assert not multiprocessing.active_children()  # not replaced yet: not every probe spawns
    snapshots._restarts.at -= 2  # its 2 s are up
    assert snapshots.builders_check() == "starting"
    assert multiprocessing.active_children()
    kill_children()
    snapshots._restarts.at -= 4
    assert snapshots.builders_check() == "error: builders keep dying"  # the third in a row
    ready_builder()  # and once one is up again, it is "ok"
    assert snapshots._restarts.count == 0
