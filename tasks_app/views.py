"""Task routes: a workspace's tasks (listed; created by workbench.views, which may also open
the first tab) and one task (read, edit)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import documented, member, query_flag, validated
from core.pagination import PAGE_PARAMETERS, paginated
from core.selectors import workspace_get_for_user
from core.throttles import CreateRateThrottle
from sandboxes.serializers import ModelChoiceSerializer
from tasks_app import selectors
from tasks_app import services as task_services
from tasks_app.serializers import (
    TaskOutputSerializer,
    TaskUpdateInputSerializer,
)

if TYPE_CHECKING:
    from rest_framework.request import Request

INCLUDE_ARCHIVED = OpenApiParameter("include_archived", OpenApiTypes.BOOL, required=False)


class WorkspaceTaskListView(APIView):
    throttle_classes = [CreateRateThrottle]
    throttle_scope = "task_create"

    @extend_schema(
        summary="List a workspace's tasks",
        parameters=[INCLUDE_ARCHIVED, *PAGE_PARAMETERS],
        **documented(
            {200: TaskOutputSerializer(many=True)}, "workspace_not_found", "invalid_cursor"
        ),
    )
    def get(self, request: Request, workspace_id: int) -> Response:
        """Newest first (pages follow the `Link` header)."""
        workspace = workspace_get_for_user(workspace_id=workspace_id, user=member(request))
        tasks = selectors.task_list_for_workspace(
            workspace_id=workspace.pk, include_archived=query_flag(request, "include_archived")
        )
        return paginated(
            request,
            self,
            tasks,
            ordering=("-created_at", "-pk"),
            serialize=lambda page: TaskOutputSerializer(page, many=True).data,
        )


class TaskDetailView(APIView):
    @extend_schema(
        summary="Read a task (with its sandbox and provisioning steps)",
        **documented({200: TaskOutputSerializer}, "task_not_found"),
    )
    def get(self, request: Request, task_id: int) -> Response:
        task = selectors.task_get_for_user(task_id=task_id, user=member(request))
        return Response(TaskOutputSerializer(task).data)

    @extend_schema(
        summary="Edit a task's title, repository, branch or agent",
        description="Repository, branch and agent apply from the task's next provisioning "
        "attempt: a live sandbox keeps what it was made with.",
        request=TaskUpdateInputSerializer,
        **documented({200: TaskOutputSerializer}, "task_not_found", body=True),
    )
    def patch(self, request: Request, task_id: int) -> Response:
        task = selectors.task_get_for_user(task_id=task_id, user=member(request))
        data = validated(TaskUpdateInputSerializer, request.data)
        task = task_services.task_update(task_id=task.pk, **data)
        return Response(TaskOutputSerializer(task).data)


class AgentSerializer(serializers.Serializer[dict[str, object]]):
    """An agent a task may run (tasks_app.selectors.agent_list_for_user)."""

    name = serializers.CharField()
    models = ModelChoiceSerializer(many=True)
    default_model = serializers.CharField()


class AgentListView(APIView):
    @extend_schema(
        summary="List the agents a task may run",
        **documented({200: AgentSerializer(many=True)}),
    )
    def get(self, request: Request) -> Response:
        """The agents a task may run, with the models their server offers (as last reported
        in one of your workspaces; a task's sandbox lists its own once it is ready)."""
        return Response(selectors.agent_list_for_user(user=member(request)))
