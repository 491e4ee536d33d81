"""Task input and output shapes; the output is shared by REST and the websocket stream."""

from __future__ import annotations

from typing import Any, TypedDict, cast

from django.utils import timezone
from rest_framework import serializers

from core.representation import DirectRepresentation, iso_datetime
from core.serializers import StrictInputSerializer
from sandboxes.providers import available_providers
from sandboxes.repositories import RepositoryRefused, check_repository
from sandboxes.serializers import SandboxOutputSerializer, SandboxPayload, sandbox_payload
from tasks_app.models import Task


class _TaskListSerializer(serializers.ListSerializer):
    """Many tasks with their sandboxes read once for all (not a query or two per task)."""

    def to_representation(self, data: Any) -> list[Any]:
        from sandboxes.selectors import sandboxes_current_for_tasks

        tasks = list(data.all() if hasattr(data, "all") else data)
        context = self.context
        assert isinstance(context, dict) and self.child is not None
        sandboxes = sandboxes_current_for_tasks(task_ids=[task.pk for task in tasks])
        sandbox = SandboxOutputSerializer()
        context["sandboxes"] = {
            task_id: sandbox.to_representation(row) for task_id, row in sandboxes.items()
        }
        return [self.child.to_representation(task) for task in tasks]


class TaskPayload(TypedDict):
    """The `task.updated` event, and a task in REST answers and snapshots."""

    id: int
    workspace: int
    title: str
    repository: str
    branch: str
    provider: str
    agent: str
    archived: bool
    version: int
    created_at: str
    updated_at: str
    archived_at: str | None
    sandbox: SandboxPayload | None


def task_payload(task: Task) -> TaskPayload:
    return cast("TaskPayload", TaskOutputSerializer(task).data)


class TaskOutputSerializer(DirectRepresentation):
    """A task with its current sandbox; built by hand (core/representation.py): a snapshot
    page and a task list carry 50 of them."""

    workspace = serializers.IntegerField(source="workspace_id", read_only=True)
    archived = serializers.BooleanField(source="is_archived", read_only=True)
    sandbox = serializers.SerializerMethodField()

    def to_representation(self, task: Task) -> dict[str, Any]:
        zone = timezone.get_current_timezone()
        return {
            "id": task.pk,
            "workspace": task.workspace_id,
            "title": task.title,
            "repository": task.repository,
            "branch": task.branch,
            "provider": task.provider,
            "agent": task.agent,
            "archived": bool(task.is_archived),
            "version": task.version,
            "created_at": iso_datetime(task.created_at, zone),
            "updated_at": iso_datetime(task.updated_at, zone),
            "archived_at": iso_datetime(task.archived_at, zone),
            "sandbox": self.get_sandbox(task),
        }

    class Meta:
        model = Task
        fields = [
            "id",
            "workspace",
            "title",
            "repository",
            "branch",
            "provider",
            "agent",
            "archived",
            "version",
            "created_at",
            "updated_at",
            "archived_at",
            "sandbox",
        ]
        read_only_fields = fields
        list_serializer_class = _TaskListSerializer

    def get_sandbox(self, task: Task) -> SandboxPayload | None:
        """The task's current sandbox (live, else the latest attempt) with its steps."""
        from sandboxes.selectors import sandbox_current_for_task

        known: dict[int, SandboxPayload] | None = self.context.get("sandboxes")
        if known is not None:  # a list's (_TaskListSerializer)
            return known.get(task.pk)
        sandbox = sandbox_current_for_task(task_id=task.pk)
        return sandbox_payload(sandbox) if sandbox else None


class TaskCreateInputSerializer(StrictInputSerializer):
    title = serializers.CharField(max_length=200)
    repository = serializers.CharField(
        max_length=1000, required=False, allow_blank=True, default=""
    )
    branch = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    provider = serializers.CharField(max_length=64, required=False, default="local")
    agent = serializers.CharField(max_length=64, required=False, default="mock")

    def validate_provider(self, value: str) -> str:
        if value not in available_providers():
            raise serializers.ValidationError(
                f"unknown provider {value!r}; available: {', '.join(available_providers())}"
            )
        return value

    def validate_agent(self, value: str) -> str:
        from django.conf import settings

        if value not in settings.WORKBENCH_AGENTS:
            raise serializers.ValidationError(
                f"unknown agent {value!r}; available: {', '.join(settings.WORKBENCH_AGENTS)}"
            )
        return value

    def validate_branch(self, value: str) -> str:
        # A branch name becomes a git argument: refuse what git would read as an option.
        if value.startswith("-") or any(c in value for c in " \t\n~^:?*[\\"):
            raise serializers.ValidationError(f"{value!r} is not a valid branch name")
        return value

    def validate_repository(self, value: str) -> str:
        try:
            check_repository(value)
        except RepositoryRefused as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value


class TaskUpdateInputSerializer(TaskCreateInputSerializer):
    """Title, repository, branch and agent; the next provisioning attempt uses the new
    values (a sandbox that is live keeps what it was made with)."""

    title = serializers.CharField(max_length=200, required=False)
    repository = serializers.CharField(max_length=1000, required=False, allow_blank=True)
    branch = serializers.CharField(max_length=255, required=False, allow_blank=True)
    agent = serializers.CharField(max_length=64, required=False)
    provider = None  # type: ignore[assignment]  # a task stays with its provider

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise serializers.ValidationError(
                "nothing to update: send title, repository, branch or agent"
            )
        return attrs
