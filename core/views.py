"""Workspace routes: list the caller's workspaces, create one (its creator owns it), and
its members: list, add, change a role, remove or leave."""

from __future__ import annotations

from typing import TYPE_CHECKING

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from core import selectors
from core import services as core_services
from core.api import documented, member, validated
from core.pagination import PAGE_PARAMETERS, paginated
from core.serializers import (
    MemberAddInputSerializer,
    MemberOutputSerializer,
    MemberUpdateInputSerializer,
    WorkspaceCreateInputSerializer,
    WorkspaceOutputSerializer,
    member_payload,
)
from core.throttles import CreateRateThrottle

if TYPE_CHECKING:
    from rest_framework.request import Request


class WorkspaceListView(APIView):
    throttle_classes = [CreateRateThrottle]
    throttle_scope = "workspace_create"

    @extend_schema(
        summary="List my workspaces",
        parameters=PAGE_PARAMETERS,
        **documented({200: WorkspaceOutputSerializer(many=True)}, "invalid_cursor"),
    )
    def get(self, request: Request) -> Response:
        workspaces = selectors.workspace_list_for_user(user=member(request))
        return paginated(
            request,
            self,
            workspaces,
            ordering="id",
            serialize=lambda page: WorkspaceOutputSerializer(page, many=True).data,
        )

    @extend_schema(
        summary="Create a workspace (you become its owner)",
        request=WorkspaceCreateInputSerializer,
        **documented({201: WorkspaceOutputSerializer}, body=True),
    )
    def post(self, request: Request) -> Response:
        data = validated(WorkspaceCreateInputSerializer, request.data)
        workspace = core_services.workspace_create(user=member(request), name=data["name"])
        workspace = selectors.workspace_get_for_user(
            workspace_id=workspace.pk, user=member(request)
        )
        return Response(WorkspaceOutputSerializer(workspace).data, status=status.HTTP_201_CREATED)


class WorkspaceMemberListView(APIView):
    throttle_classes = [CreateRateThrottle]
    throttle_scope = "member_add"

    @extend_schema(
        summary="List a workspace's members",
        parameters=PAGE_PARAMETERS,
        **documented(
            {200: MemberOutputSerializer(many=True)}, "workspace_not_found", "invalid_cursor"
        ),
    )
    def get(self, request: Request, workspace_id: int) -> Response:
        """Members in the order they joined (pages follow the `Link` header)."""
        members = selectors.member_list(workspace_id=workspace_id, user=member(request))
        return paginated(
            request,
            self,
            members,
            ordering=("created_at", "pk"),
            serialize=lambda page: [member_payload(m) for m in page],
        )

    @extend_schema(
        summary="Add a member (owners)",
        request=MemberAddInputSerializer,
        **documented(
            {201: MemberOutputSerializer},
            "workspace_not_found",
            "not_an_owner",
            "user_not_found",
            "already_member",
            "ambiguous_email",
            body=True,
        ),
    )
    def post(self, request: Request, workspace_id: int) -> Response:
        """Owners add a member by `username` or `email`, as `member` (default) or `owner`."""
        user = member(request)
        selectors.workspace_get_for_user(workspace_id=workspace_id, user=user)
        data = validated(MemberAddInputSerializer, request.data)
        added = core_services.member_add(workspace_id=workspace_id, by=user, **data)
        return Response(member_payload(added), status=status.HTTP_201_CREATED)


class WorkspaceMemberDetailView(APIView):
    @extend_schema(
        summary="Change a member's role (owners)",
        request=MemberUpdateInputSerializer,
        **documented(
            {200: MemberOutputSerializer},
            "workspace_not_found",
            "not_an_owner",
            "member_not_found",
            "last_owner",
            body=True,
        ),
    )
    def patch(self, request: Request, workspace_id: int, user_id: int) -> Response:
        """Owners change a member's role; the last owner cannot be demoted (409)."""
        user = member(request)
        selectors.workspace_get_for_user(workspace_id=workspace_id, user=user)
        data = validated(MemberUpdateInputSerializer, request.data)
        changed = core_services.member_update(
            workspace_id=workspace_id, by=user, user_id=user_id, role=data["role"]
        )
        return Response(member_payload(changed))

    @extend_schema(
        summary="Remove a member, or leave",
        request=None,
        **documented(
            {204: None},
            "workspace_not_found",
            "not_an_owner",
            "member_not_found",
            "last_owner",
            "permission_denied",
        ),
    )
    def delete(self, request: Request, workspace_id: int, user_id: int) -> Response:
        """Owners remove a member; any member removes themselves (leaves). The last owner
        stays (409). The removed member's open sockets on the workspace close (4403)."""
        user = member(request)
        selectors.workspace_get_for_user(workspace_id=workspace_id, user=user)
        core_services.member_remove(workspace_id=workspace_id, by=user, user_id=user_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
