"""Recovery that needs no beat and no prompt: the workers' own upkeep (workbench/upkeep.py)
finds lost work from its rows and dead servers from their health, on the real processes.
Nothing here runs the reconciler from the test: only the workers do."""

from __future__ import annotations

import os
import signal

from sandboxes.models import Sandbox, SandboxState
from tests.helpers import wait_for_running_step, wait_until
from tests.integration.test_faults import open_tabs, owner  # noqa: F401 (fixture)
from workbench import upkeep
from workbench.models import PENDING_STATES, TabState, WorkbenchTab

# What a deployment would set for fast repair; the defaults are 20 s and 5 s.
UPKEEP = {
    "WORKBENCH_STALL_SECONDS": "5",
    "WORKBENCH_UPKEEP_INTERVAL": "1",
    "WORKBENCH_HEALTH_GRACE": "2",
}


def states(tab_ids: list[str]) -> list[tuple[str, str]]:
    return list(WorkbenchTab.objects.filter(pk__in=tab_ids).values_list("state", "error_code"))


def test_a_killed_ready_server_puts_its_tabs_in_error_within_the_bound(
    owner,  # noqa: F811
    celery_worker,
    make_celery_worker,
):
    celery_worker.stop()
    try:
        make_celery_worker(env=UPKEEP)
        task, tabs = open_tabs(owner, 2)
        ids = [t["id"] for t in tabs]
        wait_until(
            lambda: {s for s, _ in states(ids)} == {TabState.READY},
            timeout=60,
            message=lambda: str(states(ids)),
        )
        sandbox = Sandbox.objects.get(task_id=task["id"], state=SandboxState.READY)
        os.killpg(sandbox.pid, signal.SIGKILL)  # the server and everything in its sandbox
        wait_until(
            lambda: set(states(ids)) == {(TabState.ERROR, "sandbox_lost")},
            timeout=30,
            message=lambda: f"still {states(ids)} after the server died",
        )
        assert Sandbox.objects.get(pk=sandbox.pk).state == SandboxState.FAILED
        retried = owner["api"].post(f"/api/tabs/{ids[0]}/retry/").json()
        assert retried["state"] == TabState.PENDING_PROVISION  # a retry re-provisions
    finally:
        celery_worker.start()


def test_lost_messages_are_found_from_their_rows_with_no_beat(
    owner,  # noqa: F811
    celery_worker,
    make_celery_worker,
    redis_server,
):
    celery_worker.stop()
    try:
        make_celery_worker(env={**UPKEEP, "WORKBENCH_LOCAL_PROVISION_DELAY": "2"})
        opened = [open_tabs(owner, 2) for _ in range(3)]  # 6 pending tabs on 3 tasks
        ids = [t["id"] for _, tabs in opened for t in tabs]
        wait_for_running_step("simulated_delay")
        redis_server.client().flushall()  # every queued message is gone; no beat runs
        wait_until(
            lambda: not WorkbenchTab.objects.filter(pk__in=ids, state__in=PENDING_STATES).exists(),
            timeout=30,
            message=lambda: f"still pending: {states(ids)}",
        )
        assert {s for s, _ in states(ids)} == {TabState.READY}
        for task, _ in opened:
            live = Sandbox.objects.filter(task_id=task["id"], state=SandboxState.READY)
            assert live.count() == 1
    finally:
        celery_worker.start()


def test_a_killed_provisioning_worker_leaves_ten_waiting_tabs_ready_on_one_sandbox(
    owner,  # noqa: F811
    celery_worker,
    make_celery_worker,
):
    celery_worker.stop()
    try:
        doomed = make_celery_worker(
            env={
                **UPKEEP,
                "WORKBENCH_LOCAL_PROVISION_DELAY": "30",
                "WORKBENCH_PROVISION_LEASE_SECONDS": "3",
            }
        )
        task, tabs = open_tabs(owner, 10)
        ids = [t["id"] for t in tabs]
        wait_for_running_step("simulated_delay")
        doomed.kill(signal.SIGKILL)
        make_celery_worker(env={**UPKEEP, "WORKBENCH_PROVISION_LEASE_SECONDS": "3"})
        wait_until(
            lambda: {s for s, _ in states(ids)} == {TabState.READY},
            timeout=90,
            message=lambda: str(states(ids)),
        )
        assert Sandbox.objects.filter(task_id=task["id"]).count() == 1
    finally:
        celery_worker.start()


def test_a_lost_session_message_is_found_while_the_provisioning_queue_is_backed_up(
    owner,  # noqa: F811
    celery_worker,
    make_celery_worker,
    redis_server,
):
    """Each row is judged by its own queue: a provisioning queue that never drains (no
    provisioning worker runs) must not hold back the repair of a lost session step."""
    broker = redis_server.client()
    celery_worker.stop()
    try:
        provisioner = make_celery_worker(queues="provision", env=UPKEEP)
        fast = make_celery_worker(queues="sessions,prompts,celery", env=UPKEEP)
        ready_task, first = open_tabs(owner, 1)
        wait_until(lambda: states([first[0]["id"]]) == [(TabState.READY, "")], timeout=60)
        provisioner.stop()
        backlog = [open_tabs(owner, 1) for _ in range(2)]  # their runs wait in `provision`
        fast.stop()
        tab = owner["api"].post(f"/api/tasks/{ready_task['id']}/tabs/", json={}).json()
        assert tab["state"] == TabState.PENDING_SESSION_CREATE
        wait_until(lambda: broker.llen("sessions") >= 1, timeout=10)
        broker.delete("sessions")  # its session step is lost
        make_celery_worker(queues="sessions,prompts,celery", env=UPKEEP)
        wait_until(
            lambda: states([tab["id"]]) == [(TabState.READY, "")],
            timeout=30,
            message=lambda: f"still {states([tab['id']])}",
        )
        assert broker.llen("provision") == len(backlog)  # the backlog was there throughout
    finally:
        celery_worker.start()


def test_a_worker_stopped_or_killed_mid_round_does_not_hold_back_the_others_upkeep(
    owner,  # noqa: F811
    celery_worker,
    make_celery_worker,
    redis_server,
):
    """The upkeep lease is released by a warm shutdown and lapses within LEASE_SECONDS of a
    SIGKILL: either way the next worker's repair starts within the 30 s bound. (With a lease
    as long as the longest round, 60 s, a worker stopped mid-round left the others none.)"""
    broker = redis_server.client()
    # A ready sandbox whose server is frozen (SIGSTOP) makes every round wait on its health
    # check; the long grace keeps it ready, so the rounds stay long.
    slow_rounds = {**UPKEEP, "WORKBENCH_HEALTH_GRACE": "600"}
    celery_worker.stop()
    frozen: int | None = None
    try:
        worker = make_celery_worker(env=slow_rounds)
        task, tabs = open_tabs(owner, 1)
        wait_until(lambda: states([tabs[0]["id"]]) == [(TabState.READY, "")], timeout=60)
        frozen = Sandbox.objects.get(task_id=task["id"], state=SandboxState.READY).pid
        os.killpg(frozen, signal.SIGSTOP)

        wait_until(lambda: broker.get(upkeep.LEASE_KEY), timeout=10, message="no round began")
        worker.stop()  # warm shutdown mid-round
        assert broker.get(upkeep.LEASE_KEY) is None, "a warm shutdown left its lease held"

        worker = make_celery_worker(env=slow_rounds)
        wait_until(lambda: broker.get(upkeep.LEASE_KEY), timeout=20, message="no round began")
        worker.kill(signal.SIGKILL)
        wait_until(
            lambda: broker.get(upkeep.LEASE_KEY) is None,
            timeout=upkeep.LEASE_SECONDS + 2,
            message=lambda: f"lease still held, {broker.pttl(upkeep.LEASE_KEY)} ms to go",
        )
    finally:
        if frozen is not None:
            os.killpg(frozen, signal.SIGCONT)
        celery_worker.start()
