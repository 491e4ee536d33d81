"""Sandboxes (where a task runs) and the steps recorded while provisioning them."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class SandboxState(models.TextChoices):
    """provisioning ──► ready ──► destroying ──► destroyed; provisioning|ready ──► failed."""

    PROVISIONING = "provisioning"
    READY = "ready"
    FAILED = "failed"
    DESTROYING = "destroying"
    DESTROYED = "destroyed"


LIVE_STATES = (SandboxState.PROVISIONING, SandboxState.READY)
SANDBOX_TRANSITIONS: dict[str, frozenset[str]] = {
    SandboxState.PROVISIONING: frozenset(
        {SandboxState.READY, SandboxState.FAILED, SandboxState.DESTROYING}
    ),
    SandboxState.READY: frozenset({SandboxState.FAILED, SandboxState.DESTROYING}),
    SandboxState.FAILED: frozenset({SandboxState.DESTROYING}),
    SandboxState.DESTROYING: frozenset({SandboxState.DESTROYED}),
    SandboxState.DESTROYED: frozenset(),
}


class Sandbox(models.Model):
    task = models.ForeignKey("tasks_app.Task", on_delete=models.CASCADE, related_name="sandboxes")
    provider = models.CharField(max_length=64)
    agent = models.CharField(max_length=64)
    # Deterministic provider key (task and attempt): a redelivered step finds what it made.
    key = models.CharField(max_length=200, unique=True)
    state = models.CharField(
        max_length=16, choices=SandboxState.choices, default=SandboxState.PROVISIONING
    )
    error_code = models.CharField(max_length=64, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    # Where the provider's sandbox-agent server answers; the token is a secret: never
    # serialized, never logged.
    base_url = models.CharField(max_length=500, blank=True, default="")
    token = models.CharField(max_length=200, blank=True, default="")
    workdir = models.CharField(max_length=1000, blank=True, default="")
    pid = models.IntegerField(null=True, blank=True)
    # The models its server offers for the task's agent ([value, name] pairs; empty: no
    # choice, or not known), and the default, as reported when it became ready.
    agent_models = models.JSONField(default=list, blank=True)
    default_model = models.CharField(max_length=200, blank=True, default="")
    # The steps its provisioning run will take, each with an estimate from earlier runs of
    # the task or its repository: [{"name": ..., "estimate_ms": int | None}], set as it starts.
    plan = models.JSONField(default=list, blank=True)
    # Provisioning lease: who runs the steps now, until when, and a fencing token that every
    # write of the run must match, so a worker that lost its lease cannot overwrite a newer run.
    lease_owner = models.CharField(max_length=200, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    fence = models.PositiveIntegerField(default=0)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    destroyed_at = models.DateTimeField(null=True, blank=True)
    # When a failed sandbox's server and files were freed; the reconciler sweeps failed
    # sandboxes without it, so a lost release message leaks no process.
    released_at = models.DateTimeField(null=True, blank=True)
    # Since when a ready sandbox's server has not answered the upkeep's health checks.
    unhealthy_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # Invariant 2: at most one live sandbox per task, whatever the concurrency.
            models.UniqueConstraint(
                fields=["task"],
                condition=Q(state__in=["provisioning", "ready"]),
                name="one_live_sandbox_per_task",
            )
        ]

    def __str__(self) -> str:
        return f"sandbox {self.key} ({self.state})"


class StepOutcome(models.TextChoices):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class ProvisioningStep(models.Model):
    sandbox = models.ForeignKey(Sandbox, on_delete=models.CASCADE, related_name="steps")
    name = models.CharField(max_length=64)
    outcome = models.CharField(
        max_length=16, choices=StepOutcome.choices, default=StepOutcome.RUNNING
    )
    detail = models.TextField(blank=True, default="")
    # What the step printed for members to watch (the tail, LOG_LIMIT characters).
    log = models.TextField(blank=True, default="")
    fence = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["started_at", "id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.outcome})"

    @property
    def duration_ms(self) -> int | None:
        if self.finished_at is None:
            return None
        return int((self.finished_at - self.started_at).total_seconds() * 1000)
