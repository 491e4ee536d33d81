"""Tabs', tasks', sandboxes' and steps' hand-built representations equal DRF's field-by-field
ones (core/representation.py), key for key, in order and of the same types. Each level is
compared on its own: a generic task still calls the sandbox serializer, and a generic
sandbox the step's."""

from __future__ import annotations

import zoneinfo
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from core.representation import DirectRepresentation
from sandboxes.models import ProvisioningStep, SandboxState, StepOutcome
from sandboxes.serializers import ProvisioningStepSerializer, SandboxOutputSerializer
from tasks_app.serializers import TaskOutputSerializer
from tests.factories import SandboxFactory, TabFactory, TaskFactory
from workbench.models import TabErrorCode, TabState
from workbench.serializers import MemberTabOutputSerializer, TabOutputSerializer

pytestmark = pytest.mark.django_db


def assert_same(serializer: DirectRepresentation, instance: Any) -> dict:
    fast, generic = (
        serializer.to_representation(instance),
        serializer.generic_representation(instance),
    )
    assert list(fast) == list(generic)  # same fields, same order
    assert fast == generic
    # Same types too: a TextChoices member equals its value, but is not a plain str.
    assert [type(v) for v in fast.values()] == [type(v) for v in generic.values()]
    return fast


def _steps(sandbox) -> list[ProvisioningStep]:
    start = timezone.now() - timedelta(seconds=40, microseconds=123)
    rows = [
        ("prepare_workspace", StepOutcome.SUCCEEDED, start + timedelta(milliseconds=1500)),
        ("start_server", StepOutcome.FAILED, start + timedelta(seconds=3)),
        ("install_agent", StepOutcome.RUNNING, None),
    ]
    return [
        ProvisioningStep.objects.create(
            sandbox=sandbox,
            name=name,
            outcome=outcome,
            detail="exit status 1" if outcome == StepOutcome.FAILED else "",
            log="cloning…\n✓ done",
            started_at=start + timedelta(seconds=n),
            finished_at=finished,
        )
        for n, (name, outcome, finished) in enumerate(rows)
    ]


def _sandboxes():
    ready = SandboxFactory(
        agent_models=[["mock-small", "Mock small"], ["mock-large", "Mock large"]],
        default_model="mock-small",
        ready_at=timezone.now(),
        plan=[
            {"name": "prepare_workspace", "estimate_ms": 1200},
            {"name": "start_server", "estimate_ms": None},
            {"name": "install_agent"},
        ],
    )
    failed = SandboxFactory(
        state=SandboxState.FAILED, error_code="provision_failed", error_message="boom ✗"
    )
    destroyed = SandboxFactory(state=SandboxState.DESTROYED, destroyed_at=timezone.now())
    _steps(ready)
    _steps(failed)
    return [ready, failed, destroyed]


def test_steps_sandboxes_and_tasks_match_drf_in_every_state():
    for sandbox in _sandboxes():
        for step in sandbox.steps.all():
            assert_same(ProvisioningStepSerializer(), step)
        fast = assert_same(SandboxOutputSerializer(), sandbox)
        assert len(fast["steps"]) == sandbox.steps.count()
        assert_same(TaskOutputSerializer(), sandbox.task)
    bare = TaskFactory(title="Ünïcode ✓", repository="https://example.com/r.git", branch="dev")
    assert assert_same(TaskOutputSerializer(), bare)["sandbox"] is None
    archived = TaskFactory(archived_at=timezone.now())
    assert assert_same(TaskOutputSerializer(), archived)["archived"] is True


def test_a_running_step_has_no_duration_and_a_plan_step_without_estimate_has_null():
    ready = _sandboxes()[0]
    fast = SandboxOutputSerializer().to_representation(ready)
    assert [step["duration_ms"] for step in fast["steps"]] == [1500, 2000, None]
    assert [step["estimate_ms"] for step in fast["plan"]] == [1200, None, None]
    assert fast["models"][1] == {"value": "mock-large", "name": "Mock large"}


def test_datetimes_follow_the_active_time_zone_as_drf_does():
    sandbox = _sandboxes()[0]
    step = sandbox.steps.first()
    with timezone.override(zoneinfo.ZoneInfo("Asia/Kolkata")):
        assert_same(ProvisioningStepSerializer(), step)
        assert assert_same(SandboxOutputSerializer(), sandbox)["ready_at"].endswith("+05:30")
        assert assert_same(TaskOutputSerializer(), sandbox.task)["created_at"].endswith("+05:30")


def test_a_task_list_carries_the_same_rows():
    tasks = [sandbox.task for sandbox in _sandboxes()] + [TaskFactory()]
    listed = TaskOutputSerializer(tasks, many=True).data
    serializer = TaskOutputSerializer()
    assert [dict(row) for row in listed] == [serializer.generic_representation(t) for t in tasks]


def test_tabs_match_drf_pending_ready_errored_and_closed():
    assert_same(TabOutputSerializer(), TabFactory(state=TabState.PENDING_PROVISION))
    stamp = timezone.now() - timedelta(minutes=3, microseconds=17)
    tabs = [
        TabFactory(
            state=TabState.READY,
            sandbox=SandboxFactory(),
            session_id="s-1",
            ready_at=stamp,
            model="mock-fast",
            session_model="mock-fast",
            title="Ünïcode ✓",
            running_since=stamp,
        ),
        TabFactory(state=TabState.ERROR, error_code="provision_failed", error_message="boom"),
        TabFactory(state=TabState.CLOSED, closed_at=stamp),
    ]
    for tab in tabs:
        assert_same(TabOutputSerializer(), tab)
    with timezone.override(zoneinfo.ZoneInfo("Asia/Kolkata")):
        assert assert_same(TabOutputSerializer(), tabs[0])["ready_at"].endswith("+05:30")
    listed = TabOutputSerializer(tabs, many=True).data
    generic = [TabOutputSerializer().generic_representation(tab) for tab in tabs]
    assert [dict(row) for row in listed] == generic


def test_choices_set_in_memory_come_out_as_plain_strings():
    tab = TabFactory(state=TabState.ERROR, error_code=TabErrorCode.SESSION_FAILED)
    assert type(assert_same(TabOutputSerializer(), tab)["state"]) is str
    step = _steps(SandboxFactory(state=SandboxState.PROVISIONING))[0]
    assert type(assert_same(ProvisioningStepSerializer(), step)["outcome"]) is str


def _subclasses(cls: type) -> list[type]:
    return [sub for child in cls.__subclasses__() for sub in (child, *_subclasses(child))]


def test_every_direct_serializer_builds_its_own_fields():
    """A subclass that adds fields but inherits its parent's hand-built dict would drop them
    silently (DRF's own path is `generic_representation`)."""
    found = _subclasses(DirectRepresentation)
    assert {TabOutputSerializer, MemberTabOutputSerializer, TaskOutputSerializer} <= set(found)
    assert SandboxOutputSerializer in found and ProvisioningStepSerializer in found
    for serializer in found:
        assert "to_representation" in vars(serializer), serializer.__name__
