"""The /metrics endpoint: the workflow's state in Prometheus text format."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils.timezone import now
from prometheus_client.parser import text_string_to_metric_families

from sandboxes.models import ProvisioningStep, SandboxState, StepOutcome
from tests.factories import SandboxFactory, TabFactory
from workbench.models import TabState, WorkbenchTab

pytestmark = pytest.mark.django_db


def scrape(**headers: str) -> dict[tuple, float]:
    response = Client().get("/metrics", headers=headers)
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_it_reports_tabs_sandboxes_time_to_ready_and_step_durations(settings):
    settings.WORKBENCH_METRICS_PUBLIC = True
    sandbox = SandboxFactory(state=SandboxState.READY)
    ready = TabFactory(task=sandbox.task, state=TabState.READY)
    WorkbenchTab.objects.filter(pk=ready.pk).update(
        ready_at=ready.created_at + timedelta(seconds=2)
    )
    TabFactory(task=sandbox.task, state=TabState.PENDING_PROVISION)
    start = now()
    ProvisioningStep.objects.create(
        sandbox=sandbox,
        name="install_agent",
        started_at=start,
        finished_at=start + timedelta(milliseconds=300),
        outcome=StepOutcome.SUCCEEDED,
    )

    samples = scrape()
    assert samples[("workbench_tabs", (("state", "ready"),))] == 1
    assert samples[("workbench_tabs", (("state", "pending_provision"),))] == 1
    assert samples[("workbench_tabs", (("state", "closed"),))] == 0
    assert samples[("workbench_sandboxes", (("state", "ready"),))] == 1
    ready_le = {
        dict(labels)["le"]: value
        for (name, labels), value in samples.items()
        if name == "workbench_tab_time_to_ready_seconds_bucket"
    }
    assert (ready_le["1.0"], ready_le["2.5"], ready_le["+Inf"]) == (0, 1, 1)
    assert samples[("workbench_tab_time_to_ready_seconds_sum", ())] == pytest.approx(2.0)
    step = (
        "workbench_provisioning_step_duration_seconds_bucket",
        (("le", "0.5"), ("step", "install_agent")),
    )
    assert samples[step] == 1


def test_it_requires_the_token_when_one_is_set(settings):
    settings.WORKBENCH_METRICS_TOKEN = "s3cret"
    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", headers={"Authorization": "Bearer s3cre"}).status_code == 401
    assert "workbench_tabs" in scrape(Authorization="Bearer s3cret").__repr__()


def test_without_a_token_it_is_not_served_unless_opened_explicitly(settings):
    settings.WORKBENCH_METRICS_TOKEN = ""
    settings.WORKBENCH_METRICS_PUBLIC = False
    refused = Client().get("/metrics")
    assert refused.status_code == 404
    assert b"workbench_tabs" not in refused.content
    settings.WORKBENCH_METRICS_PUBLIC = True
    assert "workbench_tabs" in scrape().__repr__()
