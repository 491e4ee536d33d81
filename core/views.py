"""Workspace routes: list the caller's workspaces, create one (its creator owns it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from core import selectors
from core import services as core_services
from core.api import ErrorSerializer, member, validated
from core.serializers import WorkspaceCreateInputSerializer, WorkspaceOutputSerializer
from core.throttles import CreateRateThrottle

if TYPE_CHECKING:
    from rest_framework.request import Request


class WorkspaceListView(APIView):
    throttle_classes = [CreateRateThrottle]
    throttle_scope = "workspace_create"

    @extend_schema(responses={200: WorkspaceOutputSerializer(many=True)})
    def get(self, request: Request) -> Response:
        workspaces = selectors.workspace_list_for_user(user=member(request))
        return Response(WorkspaceOutputSerializer(workspaces, many=True).data)

    @extend_schema(
        request=WorkspaceCreateInputSerializer,
        responses={
            201: WorkspaceOutputSerializer,
            400: ErrorSerializer,
            413: ErrorSerializer,
            429: ErrorSerializer,
        },
    )
    def post(self, request: Request) -> Response:
        data = validated(WorkspaceCreateInputSerializer, request.data)
        workspace = core_services.workspace_create(user=member(request), name=data["name"])
        workspace = selectors.workspace_get_for_user(
            workspace_id=workspace.pk, user=member(request)
        )
        return Response(WorkspaceOutputSerializer(workspace).data, status=status.HTTP_201_CREATED)
