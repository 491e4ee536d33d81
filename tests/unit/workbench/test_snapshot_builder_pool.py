"""The builder processes' pool (workbench/snapshots.py), with real spawned builders: a build
runs in another process, a refusal crosses back as NotMember, and a builder that dies
mid-build is replaced and the build tried once more."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest

from tests.support import builder_jobs
from workbench import snapshots


@pytest.fixture
def builders(settings) -> Iterator[None]:
    settings.WORKBENCH_SNAPSHOT_PROCESSES = 1
    yield
    pool = snapshots._builders
    snapshots._builders = None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


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
