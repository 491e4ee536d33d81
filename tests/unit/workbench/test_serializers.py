"""The tab's hand-built representation equals DRF's field-by-field one."""

from __future__ import annotations

import zoneinfo
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.factories import SandboxFactory, TabFactory
from workbench.models import TabState
from workbench.serializers import TabOutputSerializer

pytestmark = pytest.mark.django_db


def both(tab) -> tuple[dict, dict]:
    serializer = TabOutputSerializer()
    return serializer.to_representation(tab), serializer.generic_representation(tab)


def test_a_pending_tab_has_the_same_representation_key_for_key():
    fast, generic = both(TabFactory(state=TabState.PENDING_PROVISION))
    assert list(fast) == list(generic)  # same fields, same order
    assert fast == generic


def test_a_ready_errored_and_closed_tab_match_too():
    sandbox = SandboxFactory()
    stamp = timezone.now() - timedelta(minutes=3, microseconds=17)
    tabs = [
        TabFactory(
            state=TabState.READY,
            sandbox=sandbox,
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
        fast, generic = both(tab)
        assert fast == generic, tab.state


def test_datetimes_follow_the_active_time_zone_as_drf_does(settings):
    tab = TabFactory(ready_at=timezone.now())
    with timezone.override(zoneinfo.ZoneInfo("Asia/Kolkata")):
        fast, generic = both(tab)
    assert fast["ready_at"] == generic["ready_at"]
    assert fast["ready_at"].endswith("+05:30")


def test_a_list_uses_the_same_representation():
    tabs = [TabFactory(), TabFactory(state=TabState.READY)]
    listed = TabOutputSerializer(tabs, many=True).data
    assert [dict(row) for row in listed] == [both(tab)[1] for tab in tabs]
