"""A failed sandbox keeps its row and error but holds no process or files."""

from __future__ import annotations

from unittest import mock

import pytest

from sandboxes import services as sandbox_services
from sandboxes.models import SandboxState
from tests.factories import SandboxFactory, TabFactory
from workbench import services
from workbench.models import TabState

pytestmark = pytest.mark.django_db


def test_a_lost_sandbox_is_released_after_commit(django_capture_on_commit_callbacks):
    sandbox = SandboxFactory(state=SandboxState.READY)
    tab = TabFactory(task=sandbox.task, sandbox=sandbox, state=TabState.READY)
    with (
        mock.patch("workbench.workflows.start_sandbox_release") as release,
        django_capture_on_commit_callbacks(execute=True),
    ):
        services.sandbox_lost(sandbox_id=sandbox.pk, message="connection refused")
        release.assert_not_called()  # not before the commit
    release.assert_called_once_with(sandbox_id=sandbox.pk)
    tab.refresh_from_db()
    assert (tab.state, tab.error_code) == (TabState.ERROR, "sandbox_lost")


def test_releasing_stops_the_provider_sandbox_and_keeps_the_row():
    sandbox = SandboxFactory(state=SandboxState.FAILED, error_code="sandbox_lost")
    provider = mock.Mock()
    with mock.patch("sandboxes.providers.get_provider", return_value=provider):
        assert sandbox_services.sandbox_release_failed(sandbox_id=sandbox.pk)
    provider.destroy.assert_called_once()
    assert provider.destroy.call_args.args[0] == sandbox.key
    sandbox.refresh_from_db()
    assert (sandbox.state, sandbox.error_code) == (SandboxState.FAILED, "sandbox_lost")


def test_only_failed_sandboxes_are_released():
    sandbox = SandboxFactory(state=SandboxState.READY)
    with mock.patch("sandboxes.providers.get_provider") as get_provider:
        assert not sandbox_services.sandbox_release_failed(sandbox_id=sandbox.pk)
    get_provider.assert_not_called()
