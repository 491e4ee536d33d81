"""tab_create: a placeholder row now, the work after commit, never provisioning inline."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import transaction
from django.utils import timezone

from core.errors import Conflict
from sandboxes.models import Sandbox, SandboxState
from tests.factories import SandboxFactory, TaskFactory
from workbench import services
from workbench.models import TabState, WorkbenchTab

pytestmark = pytest.mark.django_db


def test_it_returns_a_pending_tab_without_provisioning(alice, dispatched):
    task = TaskFactory()
    with mock.patch("sandboxes.providers.local.LocalProvider.create") as create:
        tab, created = services.tab_create(user=alice, task=task)
    assert created
    assert tab.state == TabState.PENDING_PROVISION
    assert tab.sandbox_id is None
    create.assert_not_called()
    assert not Sandbox.objects.exclude(state=SandboxState.PROVISIONING).exists()


def test_it_starts_the_tasks_provisioning_run_once_and_only_after_commit(
    alice, dispatched, django_capture_on_commit_callbacks
):
    task = TaskFactory()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        services.tab_create(user=alice, task=task)
        dispatched.assert_not_called()  # still inside the transaction
    assert callbacks  # the run and the event's publish wait for the commit
    sandbox = Sandbox.objects.get(task=task)
    assert (sandbox.state, sandbox.fence) == (SandboxState.PROVISIONING, 0)  # not started yet
    dispatched.runs.assert_called_once_with(sandbox_id=sandbox.pk)
    dispatched.sessions.assert_not_called()  # the run hands off when it ends


def test_more_tabs_on_a_provisioning_task_wait_as_rows(
    alice, dispatched, django_capture_on_commit_callbacks
):
    task = TaskFactory()
    with django_capture_on_commit_callbacks(execute=True):
        tabs = [services.tab_create(user=alice, task=task)[0] for _ in range(5)]
    assert {tab.state for tab in tabs} == {TabState.PENDING_PROVISION}
    assert Sandbox.objects.filter(task=task).count() == 1
    assert dispatched.runs.call_count == 1  # one run, however many tabs wait on it
    dispatched.sessions.assert_not_called()


def test_a_rolled_back_request_dispatches_nothing(
    alice, dispatched, django_capture_on_commit_callbacks
):
    task = TaskFactory()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        try:
            with transaction.atomic():
                services.tab_create(user=alice, task=task)
                raise RuntimeError("the request failed after creating the tab")
        except RuntimeError:
            pass
    assert callbacks == []
    dispatched.assert_not_called()
    assert not WorkbenchTab.objects.exists()


def test_on_a_provisioned_task_it_waits_only_for_its_session(
    alice, dispatched, django_capture_on_commit_callbacks
):
    sandbox = SandboxFactory(state=SandboxState.READY)
    with django_capture_on_commit_callbacks(execute=True):
        tab, _ = services.tab_create(user=alice, task=sandbox.task)
    assert tab.state == TabState.PENDING_SESSION_CREATE
    assert tab.sandbox_id == sandbox.pk
    dispatched.sessions.assert_called_once_with(tab_id=tab.pk, attempt=1)
    dispatched.runs.assert_not_called()


def test_on_a_task_still_provisioning_it_waits_for_that_run(
    alice, dispatched, django_capture_on_commit_callbacks
):
    sandbox = SandboxFactory(state=SandboxState.PROVISIONING)
    with django_capture_on_commit_callbacks(execute=True):
        tab, _ = services.tab_create(user=alice, task=sandbox.task)
    assert tab.state == TabState.PENDING_PROVISION
    dispatched.assert_not_called()  # that run hands off to it


def test_a_replayed_idempotency_key_returns_the_same_tab(
    alice, bob, dispatched, django_capture_on_commit_callbacks
):
    task = TaskFactory()
    with django_capture_on_commit_callbacks(execute=True):
        first, created_first = services.tab_create(user=alice, task=task, idempotency_key="k1")
        again, created_again = services.tab_create(user=alice, task=task, idempotency_key="k1")
        other, _ = services.tab_create(user=bob, task=task, idempotency_key="k1")
    assert (created_first, created_again) == (True, False)
    assert again.pk == first.pk
    assert other.pk != first.pk  # keys are per user
    assert dispatched.runs.call_count == 1  # two tabs, one provisioning run


def test_a_key_reused_for_a_different_request_is_refused(alice, dispatched):
    task = TaskFactory()
    services.tab_create(user=alice, task=task, title="one", idempotency_key="k")
    with pytest.raises(Conflict) as error:
        services.tab_create(user=alice, task=task, title="two", idempotency_key="k")
    assert error.value.code == "idempotency_key_reused"


def test_it_refuses_tabs_on_an_archived_task(alice, dispatched):
    task = TaskFactory()
    services.task_archive(task_id=task.pk)
    task.refresh_from_db()
    with pytest.raises(Conflict):
        services.tab_create(user=alice, task=task)


def test_it_caps_open_tabs_per_task(alice, dispatched, settings):
    settings.WORKBENCH_MAX_OPEN_TABS_PER_TASK = 2
    task = TaskFactory()
    services.tab_create(user=alice, task=task)
    tab, _ = services.tab_create(user=alice, task=task)
    with pytest.raises(Conflict) as error:
        services.tab_create(user=alice, task=task)
    assert error.value.code == "too_many_tabs"
    services.tab_close(tab_id=tab.pk)
    services.tab_create(user=alice, task=task)  # closing one makes room


def test_a_tab_racing_an_archive_is_refused_and_starts_no_sandbox(alice, dispatched):
    task = TaskFactory()
    stale = type(task).objects.get(pk=task.pk)  # what the request loaded
    services.task_archive(task_id=task.pk)  # commits before the request takes the lock
    with pytest.raises(Conflict) as refused:
        services.tab_create(user=alice, task=stale)
    assert refused.value.code == "task_archived"
    assert not Sandbox.objects.filter(task=task).exists()


def test_a_run_for_an_archived_task_takes_no_slot_and_frees_its_sandbox(
    alice, dispatched, django_capture_on_commit_callbacks
):
    task = TaskFactory()
    services.tab_create(user=alice, task=task)
    sandbox = Sandbox.objects.get(task=task)
    type(task).objects.filter(pk=task.pk).update(archived_at=timezone.now())
    with (
        mock.patch("workbench.workflows.start_sandbox_destroy") as destroy,
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert services.sandbox_run(sandbox_id=sandbox.pk, owner="run").outcome == "gone"
    sandbox.refresh_from_db()
    assert (sandbox.state, sandbox.lease_expires_at) == (SandboxState.DESTROYING, None)
    destroy.assert_called_once_with(sandbox_id=sandbox.pk)


def test_default_titles_count_every_tab_ever_opened_on_the_task(alice, workspace, dispatched):
    """The number comes from the task's own counter, not a count of its tabs: closing one
    never gives the next tab a title already taken."""
    task = TaskFactory(workspace=workspace, agent="mock")
    first, _ = services.tab_create(user=alice, task=task)
    second, _ = services.tab_create(user=alice, task=task)
    services.tab_close(tab_id=first.pk)
    third, _ = services.tab_create(user=alice, task=task)
    assert [first.title, second.title, third.title] == ["mock 1", "mock 2", "mock 3"]
