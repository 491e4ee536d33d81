"""The reconciler re-drives stalled pending tabs, a bounded number of times."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.core.management import call_command
from django.utils.timezone import now

from sandboxes.models import Sandbox, SandboxState
from tests.factories import SandboxFactory, TabFactory, UserFactory
from workbench import reconciler
from workbench.models import TabState, WorkbenchTab

pytestmark = pytest.mark.django_db


def stale(tab, seconds: float = 3600) -> None:
    """No state change, and no re-drive, for `seconds` (nor a run sent for its task)."""
    past = now() - timedelta(seconds=seconds)
    Sandbox.objects.filter(task_id=tab.task_id).update(updated_at=past)
    WorkbenchTab.objects.filter(pk=tab.pk).update(state_changed_at=past)
    WorkbenchTab.objects.filter(pk=tab.pk, redriven_at__isnull=False).update(redriven_at=past)


def test_it_redrives_a_stalled_tab_then_fails_it_after_the_bound(
    settings, dispatched, django_capture_on_commit_callbacks
):
    settings.WORKBENCH_MAX_REDRIVES = 2
    tab = TabFactory(state=TabState.PENDING_PROVISION)
    for expected in (1, 2):
        stale(tab)
        with django_capture_on_commit_callbacks(execute=True):
            assert reconciler.reconcile()["redriven"] == 1
        assert WorkbenchTab.objects.get(pk=tab.pk).redrives == expected
    # The first re-drive makes the task's sandbox (it had none), the second starts its run
    # again (nobody holds its lease): one sandbox row, one run message each time.
    assert dispatched.runs.call_count == 2
    assert Sandbox.objects.filter(task=tab.task).count() == 1
    stale(tab)
    assert reconciler.reconcile()["failed"] == 1
    failed = WorkbenchTab.objects.get(pk=tab.pk)
    assert (failed.state, failed.error_code) == (TabState.ERROR, "timeout")


def test_it_leaves_recent_and_settled_tabs_alone(dispatched):
    TabFactory(state=TabState.PENDING_PROVISION)  # just created
    for state in (TabState.READY, TabState.ERROR, TabState.CLOSED):
        stale(TabFactory(state=state))
    assert reconciler.reconcile() == {
        "redriven": 0,
        "failed": 0,
        "prompts": 0,
        "swept": 0,
    }
    dispatched.assert_not_called()


def test_a_tab_waiting_on_a_live_provisioning_run_is_not_stalled(dispatched):
    sandbox = SandboxFactory(
        state=SandboxState.PROVISIONING, lease_expires_at=now() + timedelta(seconds=60)
    )
    tab = TabFactory(task=sandbox.task, state=TabState.PENDING_PROVISION)
    stale(tab)
    assert reconciler.reconcile()["redriven"] == 0
    sandbox.__class__.objects.filter(pk=sandbox.pk).update(
        lease_expires_at=now() - timedelta(seconds=1)
    )
    assert reconciler.reconcile()["redriven"] == 1  # its run died: the lease lapsed


def test_a_tab_queued_for_its_workspaces_share_is_not_stalled(dispatched):
    running = SandboxFactory(
        state=SandboxState.PROVISIONING, fence=1, lease_expires_at=now() + timedelta(seconds=60)
    )
    queued = SandboxFactory(
        task__workspace=running.task.workspace,
        state=SandboxState.PROVISIONING,
        fence=0,
        lease_expires_at=None,
    )
    tab = TabFactory(task=queued.task, state=TabState.PENDING_PROVISION)
    stale(tab)
    assert reconciler.reconcile()["redriven"] == 0
    running.__class__.objects.filter(pk=running.pk).update(state=SandboxState.READY)
    assert reconciler.reconcile()["redriven"] == 1  # a slot is free: its wait was lost


def test_the_management_command_runs_it(capsys, dispatched):
    call_command("reconcile")
    assert "re-drove 0 tab(s)" in capsys.readouterr().out


def test_a_tab_whose_message_waits_in_its_queue_is_not_stalled(
    dispatched, monkeypatch, django_capture_on_commit_callbacks
):
    """Judged by its own queue: queued behind older messages, it is waiting its turn; once
    that queue has moved past it, its message was lost, however long the queue still is."""
    tab = TabFactory(state=TabState.PENDING_SESSION_CREATE)
    stale(tab, seconds=120)
    sent = now().timestamp()
    head = {reconciler.SESSIONS: sent - 130}  # an older message still waits ahead of it
    monkeypatch.setattr(reconciler.queues, "oldest_waiting", lambda names: head)
    assert reconciler.reconcile()["redriven"] == 0
    # A long provisioning queue holds back no session repair.
    head.clear()
    head[reconciler.PROVISION] = sent - 3600
    with django_capture_on_commit_callbacks(execute=True):
        assert reconciler.reconcile()["redriven"] == 1
    assert dispatched.sessions.call_count == 1
    stale(tab, seconds=120)
    head.clear()
    head[reconciler.SESSIONS] = sent - 60  # the queue has moved past it: lost, not queued
    with django_capture_on_commit_callbacks(execute=True):
        assert reconciler.reconcile()["redriven"] == 1
    assert dispatched.sessions.call_count == 2


def test_a_queued_sandbox_whose_run_was_sent_late_waits_for_its_message(dispatched, monkeypatch):
    """A queued sandbox's run is sent when a slot frees, long after its tab moved: the tab
    is timed from that send, not from its own last change."""
    from sandboxes import services as sandbox_services

    sandbox = SandboxFactory(state=SandboxState.PROVISIONING, lease_expires_at=None)
    tab = TabFactory(task=sandbox.task, state=TabState.PENDING_PROVISION)
    stale(tab)
    assert sandbox_services.sandboxes_to_start(workspace_id=sandbox.task.workspace_id) == [
        sandbox.pk
    ]
    head = {reconciler.PROVISION: now().timestamp() - 600}
    monkeypatch.setattr(reconciler.queues, "oldest_waiting", lambda names: head)
    assert reconciler.reconcile()["redriven"] == 0
    head.clear()  # the queue drained and the run never started: its message was lost
    Sandbox.objects.filter(pk=sandbox.pk).update(updated_at=now() - timedelta(hours=1))
    assert reconciler.reconcile()["redriven"] == 1


def test_it_reads_how_far_each_queue_has_got_from_redis(settings):
    """The oldest waiting message's publish header, per queue; empty queues are left out,
    and a Redis that does not answer leaves every queue out."""
    import json

    import redis

    from workbench import queues

    client = mock.MagicMock()
    client.pipeline.return_value.__enter__.return_value.execute.return_value = [
        json.dumps({"headers": {queues.SENT_AT: 1234.5}}).encode(),
        None,
        b"not json",
    ]
    with mock.patch.object(redis.Redis, "from_url", return_value=client):
        found = queues.oldest_waiting(["provision", "sessions", "prompts"])
    assert found["provision"] == 1234.5
    assert "sessions" not in found
    assert found["prompts"] == 0.0  # unreadable: the oldest possible, so it holds back
    client.pipeline.side_effect = redis.ConnectionError("down")
    with mock.patch.object(redis.Redis, "from_url", return_value=client):
        assert queues.oldest_waiting(["provision"]) == {}


def test_provisioning_that_keeps_dying_ends_in_error_not_a_loop(settings, dispatched):
    from workbench import services

    settings.WORKBENCH_MAX_PROVISION_RUNS = 3
    sandbox = SandboxFactory(
        state=SandboxState.PROVISIONING, fence=3, lease_expires_at=now() - timedelta(seconds=1)
    )
    waiting = [TabFactory(task=sandbox.task, state=TabState.PENDING_PROVISION) for _ in range(2)]
    outcome = services.sandbox_run(sandbox_id=sandbox.pk, owner="next-run")
    assert outcome.outcome == "failed"
    sandbox.refresh_from_db()
    assert (sandbox.state, sandbox.error_code) == (SandboxState.FAILED, "stalled")
    for tab in waiting:
        tab.refresh_from_db()
        assert (tab.state, tab.error_code) == (TabState.ERROR, "provision_failed")
        assert "interrupted 3 times" in tab.error_message


def test_a_session_step_that_keeps_dying_ends_in_error(settings):
    from workbench import services

    settings.WORKBENCH_MAX_SESSION_STARTS = 2
    sandbox = SandboxFactory(state=SandboxState.READY)
    tab = TabFactory(
        task=sandbox.task, sandbox=sandbox, state=TabState.PENDING_SESSION_CREATE, session_starts=2
    )
    services.tab_open_session(tab_id=tab.pk, attempt=1)
    tab.refresh_from_db()
    assert (tab.state, tab.error_code) == (TabState.ERROR, "stalled")


@pytest.mark.django_db(transaction=True)
def test_a_tab_another_reconciler_holds_is_skipped_not_waited_for():
    """PostgreSQL: SKIP LOCKED. (SQLite has no row locks; its writers are serialized.)"""
    import threading

    from django.db import connection, transaction

    from core.locks import row_locks

    if not row_locks():
        pytest.skip("row locks need PostgreSQL (make test-postgres)")
    tab = TabFactory(state=TabState.PENDING_PROVISION)
    locked, release = threading.Event(), threading.Event()

    def other_reconciler() -> None:
        with transaction.atomic():
            list(WorkbenchTab.objects.select_for_update().filter(pk=tab.pk).values_list("pk"))
            locked.set()
            release.wait(10)
        connection.close()

    holder = threading.Thread(target=other_reconciler)
    holder.start()
    try:
        assert locked.wait(10)
        with transaction.atomic():
            assert reconciler._claim(tab) == 0  # returns at once: the row is taken
    finally:
        release.set()
        holder.join()
    with transaction.atomic():
        assert reconciler._claim(tab) == 1


def test_an_edit_of_a_stuck_tab_does_not_push_its_recovery_back(dispatched):
    from workbench import services

    tab = TabFactory(state=TabState.PENDING_PROVISION)
    stale(tab)
    services.tab_update(tab_id=tab.pk, user=UserFactory(), title="renamed")  # updated_at is now
    assert reconciler.reconcile()["redriven"] == 1


def test_lost_teardowns_are_swept(dispatched, monkeypatch):
    from workbench import workflows

    past = now() - timedelta(hours=1)
    failed = SandboxFactory(state=SandboxState.FAILED, key="t-failed")
    released = SandboxFactory(state=SandboxState.FAILED, key="t-released", released_at=past)
    closed = TabFactory(state=TabState.CLOSED, acp_server_id="tab-x-1", closed_at=past)
    TabFactory(
        state=TabState.CLOSED, acp_server_id="tab-y-1", closed_at=past, session_closed_at=past
    )  # torn down already
    TabFactory(state=TabState.CLOSED, closed_at=past)  # never had a session
    Sandbox.objects.filter(pk__in=[failed.pk, released.pk]).update(updated_at=past)
    releases, teardowns = mock.Mock(), mock.Mock()
    monkeypatch.setattr(workflows, "start_sandbox_release", releases)
    monkeypatch.setattr(workflows, "start_session_teardown", teardowns)
    assert reconciler.reconcile()["swept"] == 2
    releases.assert_called_once_with(sandbox_id=failed.pk)
    teardowns.assert_called_once_with(tab_id=closed.pk)


def test_a_resent_teardown_or_prompt_is_not_sent_again_while_its_queue_is_behind(
    dispatched, monkeypatch
):
    """Each re-send is stamped on its row: while the queue still holds older messages, the
    copy already sent waits there, and another round sends no second one."""
    from workbench import workflows
    from workbench.models import Message, MessageRole, MessageState

    past = now() - timedelta(hours=1)
    closed = TabFactory(state=TabState.CLOSED, acp_server_id="tab-x-1", closed_at=past)
    ready = TabFactory(state=TabState.READY)
    Message.objects.create(
        tab=ready, workspace_id=ready.workspace_id, role=MessageRole.USER, text="hi"
    )
    Message.objects.filter(tab=ready).update(updated_at=past, state=MessageState.QUEUED)
    WorkbenchTab.objects.filter(pk=ready.pk).update(state_changed_at=past)
    teardowns, deliveries = mock.Mock(), mock.Mock()
    monkeypatch.setattr(workflows, "start_session_teardown", teardowns)
    monkeypatch.setattr(workflows, "start_message_delivery", deliveries)
    head = {name: now().timestamp() - 600 for name in (reconciler.TEARDOWNS, reconciler.PROMPTS)}
    monkeypatch.setattr(reconciler.queues, "oldest_waiting", lambda names: head)
    for _ in range(3):
        reconciler.reconcile()
    teardowns.assert_called_once_with(tab_id=closed.pk)
    deliveries.assert_called_once_with(tab_id=ready.pk)


def test_a_prompt_waiting_behind_a_running_turn_is_not_resent(dispatched):
    from workbench.models import Message, MessageRole, MessageState

    tab = TabFactory(state=TabState.READY)
    for state in (MessageState.SENDING, MessageState.QUEUED):
        Message.objects.create(
            tab=tab, workspace_id=tab.workspace_id, role=MessageRole.USER, text="x", state=state
        )
    Message.objects.filter(tab=tab, state=MessageState.QUEUED).update(
        updated_at=now() - timedelta(hours=1)
    )
    assert reconciler.reconcile()["prompts"] == 0
