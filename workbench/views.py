"""Tab, transcript and workbench routes: parse, call one service or selector, serialize.
No ORM writes here. Workspace routes live in core.views, task routes in tasks_app.views;
archiving a task is here, because it closes the task's tabs, and so is creating one, because
with a prompt it opens the task's first tab."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drf_spectacular.extensions import OpenApiViewExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import parsers, serializers, status
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.response import Response
from rest_framework.views import APIView

from core import selectors as core_selectors
from core.api import documented, member, query_flag, validated
from core.errors import InvalidInput
from core.pagination import (
    CURSOR,
    PAGE_PARAMETERS,
    PAGE_SIZE,
    StrictCursorPagination,
    link_header,
    paginated,
)
from core.parsers import StrictJSONParser
from core.serializers import MemberOutputSerializer, NoInputSerializer, WorkspaceOutputSerializer
from core.throttles import LOGIN_THROTTLES, CreateRateThrottle
from tasks_app import selectors as task_selectors
from tasks_app import services as task_services
from tasks_app import views as task_views
from tasks_app.serializers import TaskOutputSerializer
from workbench import selectors, services
from workbench.serializers import (
    AuthTokenInputSerializer,
    MemberTabOutputSerializer,
    MessageCreateInputSerializer,
    MessageOutputSerializer,
    TabCreateInputSerializer,
    TabUpdateInputSerializer,
    TaskStartedOutputSerializer,
    TaskStartInputSerializer,
)
from workbench.services import messages

if TYPE_CHECKING:
    from uuid import UUID

    from rest_framework.request import Request

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description="A replay with the same key returns the same tab instead of opening another.",
)
INCLUDE_CLOSED = OpenApiParameter("include_closed", OpenApiTypes.BOOL, required=False)

MessagePageSerializer = inline_serializer(
    "MessagePage",
    {
        "next": serializers.URLField(allow_null=True),
        "previous": serializers.URLField(allow_null=True),
        "results": MessageOutputSerializer(many=True),
    },
)
# The snapshot, or with `cursor` a later page: the page's fields (tasks, tabs, next) only.
SnapshotSerializer = inline_serializer(
    "WorkbenchSnapshot",
    {
        "type": serializers.ChoiceField(choices=["snapshot"], required=False),
        "seq": serializers.IntegerField(required=False),
        "workspace": WorkspaceOutputSerializer(required=False),
        "me": serializers.IntegerField(required=False),
        "members": MemberOutputSerializer(many=True, required=False),
        "tasks": TaskOutputSerializer(many=True),
        "tabs": MemberTabOutputSerializer(many=True),
        "next": serializers.CharField(allow_null=True),
    },
)
PAGE_CURSOR = OpenApiParameter(
    "cursor",
    OpenApiTypes.STR,
    required=False,
    description="A page's `next`: the page after it (tasks, tabs, next) instead of the snapshot.",
)


class WorkbenchSnapshotView(APIView):
    @extend_schema(
        summary="Read the workbench: its snapshot, or a later page",
        parameters=[PAGE_CURSOR],
        **documented({200: SnapshotSerializer}, "workspace_not_found", "invalid_cursor"),
        description="Without `cursor`: the snapshot, the first page of the workbench. With "
        "the `cursor` of a page's `next` (also in the `Link` header): the page after it.",
    )
    def get(self, request: Request, workspace_id: int) -> Response:
        user = member(request)
        workspace = core_selectors.workspace_get_for_user(workspace_id=workspace_id, user=user)
        cursor = request.query_params.get("cursor")
        if cursor is None:
            body = selectors.workbench_snapshot(workspace=workspace, user_id=user.pk)
        else:
            body = selectors.workbench_page_after(
                workspace=workspace, user_id=user.pk, cursor=cursor
            )
        response = Response(body)
        if body["next"]:
            response["Link"] = link_header(request.build_absolute_uri(body["next"]), None)
        return response


class TaskArchiveView(APIView):
    @extend_schema(
        summary="Archive a task",
        description="Returns at once: the task's open tabs are closed, and its sandbox is "
        "destroyed in the background.",
        request=None,
        **documented({200: TaskOutputSerializer}, "task_not_found", body=True),
    )
    def post(self, request: Request, task_id: int) -> Response:
        task = task_selectors.task_get_for_user(task_id=task_id, user=member(request))
        validated(NoInputSerializer, request.data)
        task = services.task_archive(task_id=task.pk)
        return Response(TaskOutputSerializer(task).data)


class WorkspaceTaskListView(task_views.WorkspaceTaskListView):
    """The workspace's tasks; creating one may also start its work (a first tab and prompt),
    which is the workbench's business, so the route is served here."""

    @extend_schema(
        summary="Create a task (with a prompt: and open its first tab)",
        request=TaskStartInputSerializer,
        **documented(
            {201: TaskStartedOutputSerializer},
            "workspace_not_found",
            "too_many_tabs",
            "too_many_tabs_for_user",
            body=True,
        ),
        description="Creates the task at once; provisioning starts with its first tab. With "
        "a `prompt`, that first tab is opened too (`first_tab`, a placeholder) and the prompt "
        "queued in it (`first_message`), delivered once the tab is ready. 409 (and no task) "
        "when the member may not open another tab. The request counts against the task "
        "creation limit (429), the tab against the open-tab quotas.",
    )
    def post(self, request: Request, workspace_id: int) -> Response:
        user = member(request)
        workspace = core_selectors.workspace_get_for_user(workspace_id=workspace_id, user=user)
        data = validated(TaskStartInputSerializer, request.data)
        prompt = data.pop("prompt", None)
        if prompt is None:
            task = task_services.task_create(workspace_id=workspace.pk, user=user, **data)
            body = {**TaskOutputSerializer(task).data, "first_tab": None, "first_message": None}
            return Response(body, status=status.HTTP_201_CREATED)
        started = services.task_start(workspace_id=workspace.pk, user=user, prompt=prompt, **data)
        body = {
            **TaskOutputSerializer(started.task).data,
            "first_tab": selectors.new_member_tab(started.tab),
            "first_message": MessageOutputSerializer(started.message).data,
        }
        return Response(body, status=status.HTTP_201_CREATED)


class TaskTabListView(APIView):
    throttle_classes = [CreateRateThrottle]
    throttle_scope = "tab_create"

    @extend_schema(
        summary="List a task's tabs",
        parameters=[INCLUDE_CLOSED, *PAGE_PARAMETERS],
        **documented(
            {200: MemberTabOutputSerializer(many=True)}, "task_not_found", "invalid_cursor"
        ),
    )
    def get(self, request: Request, task_id: int) -> Response:
        """Oldest first (pages follow the `Link` header)."""
        task = task_selectors.task_get_for_user(task_id=task_id, user=member(request))
        tabs = selectors.tab_list_for_task(
            task_id=task.pk, include_closed=query_flag(request, "include_closed")
        )
        user_id = member(request).pk
        return paginated(
            request,
            self,
            tabs,
            ordering="created_at",
            serialize=lambda page: selectors.member_tabs(page, user_id),
        )

    @extend_schema(
        summary="Open a tab (201 at once, with the placeholder tab)",
        parameters=[IDEMPOTENCY_HEADER],
        request=TabCreateInputSerializer,
        **documented(
            {201: MemberTabOutputSerializer},
            "task_not_found",
            "invalid_idempotency_key",
            "idempotency_key_reused",
            "task_archived",
            "too_many_tabs",
            "too_many_tabs_for_user",
            body=True,
        ),
        description="Returns at once with a placeholder tab (pending_provision or "
        "pending_session_create); the sandbox and session come in the background.",
    )
    def post(self, request: Request, task_id: int) -> Response:
        user = member(request)
        task = task_selectors.task_get_for_user(task_id=task_id, user=user)
        data = validated(TabCreateInputSerializer, request.data)  # no body: {}
        key = request.headers.get("Idempotency-Key")
        if key is not None and not (0 < len(key) <= 255):
            raise InvalidInput(
                "Idempotency-Key must be 1 to 255 characters", code="invalid_idempotency_key"
            )
        tab, created = services.tab_create(
            user=user, task=task, title=data["title"], idempotency_key=key
        )
        body = selectors.new_member_tab(tab) if created else selectors.member_tab(tab, user.pk)
        response = Response(body, status=status.HTTP_201_CREATED)
        if not created:
            response["Idempotent-Replayed"] = "true"
        return response


class TabDetailView(APIView):
    @extend_schema(
        summary="Read a tab (with your own unread and draft)",
        **documented({200: MemberTabOutputSerializer}, "tab_not_found"),
    )
    def get(self, request: Request, tab_id: UUID) -> Response:
        tab = selectors.tab_get_for_user(tab_id=tab_id, user=member(request))
        return Response(selectors.member_tab(tab, member(request).pk))

    @extend_schema(
        summary="Edit a tab's title or model, or your own draft and unread",
        description="A model chosen while the tab is pending applies when its session starts; "
        "on a ready tab it is given to the live session at once (or refused with the agent's "
        "reason); on a tab in error it is kept and the tab retried.",
        request=TabUpdateInputSerializer,
        **documented(
            {200: MemberTabOutputSerializer},
            "tab_not_found",
            "tab_closed",
            "unknown_model",
            "model_not_applied",
            "sandbox_lost",
            "conflict",
            "task_archived",
            body=True,
        ),
    )
    def patch(self, request: Request, tab_id: UUID) -> Response:
        tab = selectors.tab_get_for_user(tab_id=tab_id, user=member(request))
        data = validated(TabUpdateInputSerializer, request.data)
        edited = services.tab_edit(tab_id=tab.pk, user=member(request), **data)
        return Response(selectors.member_tab(edited, member(request).pk))

    @extend_schema(
        summary="Close a tab",
        description="Idempotent. Prompts still waiting in it fail; its session is torn down "
        "in the background.",
        **documented({204: None}, "tab_not_found", "permission_denied"),
    )
    def delete(self, request: Request, tab_id: UUID) -> Response:
        tab = selectors.tab_get_for_user(tab_id=tab_id, user=member(request))
        services.tab_close(tab_id=tab.pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TabRetryView(APIView):
    @extend_schema(
        summary="Retry a tab in error",
        description="Same tab id; back to pending_session_create on the task's ready sandbox, "
        "else pending_provision (a fresh provisioning attempt when the last one failed).",
        request=None,
        **documented(
            {200: MemberTabOutputSerializer},
            "tab_not_found",
            "not_in_error",
            "task_archived",
            "conflict",
            body=True,
        ),
    )
    def post(self, request: Request, tab_id: UUID) -> Response:
        tab = selectors.tab_get_for_user(tab_id=tab_id, user=member(request))
        validated(NoInputSerializer, request.data)
        tab = services.tab_retry(tab_id=tab.pk)
        return Response(selectors.member_tab(tab, member(request).pk))


class TranscriptPagination(StrictCursorPagination):
    ordering = "id"  # oldest first; a cursor stays valid while replies keep arriving
    page_size = 50
    max_page_size = 200
    page_size_query_param = "page_size"


class TabMessageListView(APIView):
    throttle_classes = [CreateRateThrottle]
    throttle_scope = "message_send"

    @extend_schema(
        summary="Read a tab's transcript",
        parameters=[CURSOR, PAGE_SIZE],
        **documented({200: MessagePageSerializer}, "tab_not_found", "invalid_cursor", "invalid"),
    )
    def get(self, request: Request, tab_id: UUID) -> Response:
        tab = selectors.tab_get_for_user(tab_id=tab_id, user=member(request))
        paginator = TranscriptPagination()
        page = paginator.paginate_queryset(
            selectors.message_list_for_tab(tab_id=tab.pk), request, view=self
        )
        data = MessageOutputSerializer(page, many=True).data
        return paginator.with_link(paginator.get_paginated_response(data))

    @extend_schema(
        summary="Send a prompt (202; queued until the tab is ready)",
        request=MessageCreateInputSerializer,
        **documented(
            {202: MessageOutputSerializer},
            "tab_not_found",
            "tab_closed",
            "too_many_queued",
            body=True,
        ),
        description="Queues the prompt (state `queued`) and returns at once. A ready tab's "
        "prompt is delivered now; a pending or error tab's prompts wait and are delivered in "
        "order once it is ready (after a retry, for an error tab). The reply arrives as "
        "message events. 409 `tab_closed` for a closed tab (a closed tab's waiting prompts "
        "fail with that reason), 409 `too_many_queued` past WORKBENCH_MAX_QUEUED_PROMPTS "
        "waiting prompts.",
    )
    def post(self, request: Request, tab_id: UUID) -> Response:
        tab = selectors.tab_get_for_user(tab_id=tab_id, user=member(request))
        data = validated(MessageCreateInputSerializer, request.data)
        message = messages.message_send(tab_id=tab.pk, user=member(request), text=data["text"])
        return Response(MessageOutputSerializer(message).data, status=status.HTTP_202_ACCEPTED)


class TabCancelView(APIView):
    @extend_schema(
        summary="Stop the running agent turn",
        request=None,
        **documented(
            {202: MessageOutputSerializer},
            "tab_not_found",
            "no_running_turn",
            "cancel_failed",
            body=True,
        ),
        description="Stop the agent's running turn; the session stays.",
    )
    def post(self, request: Request, tab_id: UUID) -> Response:
        tab = selectors.tab_get_for_user(tab_id=tab_id, user=member(request))
        validated(NoInputSerializer, request.data)
        message = messages.message_cancel_turn(tab_id=tab.pk)
        return Response(MessageOutputSerializer(message).data, status=status.HTTP_202_ACCEPTED)


class AuthTokenView(ObtainAuthToken):
    """POST /api/auth/token/: DRF's credentials-for-token view, with the API's strict input
    (its own parsers would take JSON of any depth, its serializer unknown fields)."""

    parser_classes = (parsers.FormParser, parsers.MultiPartParser, StrictJSONParser)
    serializer_class = AuthTokenInputSerializer
    # Password guessing: attempts per client IP and per username (core/throttles.py).
    throttle_classes = LOGIN_THROTTLES


class ObtainAuthTokenSchema(OpenApiViewExtension):
    """Documents DRF's `obtain_auth_token` (POST /api/auth/token/): no authentication needed,
    and a 400 in the API's error shape when the credentials are wrong or missing."""

    target_class = "rest_framework.authtoken.views.ObtainAuthToken"
    match_subclasses = True
    priority = 1  # over drf-spectacular's own extension for this view

    def view_replacement(self) -> type[APIView]:
        # drf-spectacular's pattern: subclass the view being documented (known at runtime).
        class DocumentedObtainAuthToken(self.target):  # type: ignore[name-defined]
            @extend_schema(
                summary="Exchange a username and password for an API token",
                description="Send `username` and `password`; use the token as "
                "`Authorization: Token <token>`. Wrong credentials are a 400 (`invalid`); "
                "attempts are limited per client and per username (429).",
                auth=[],
                **documented(
                    {200: inline_serializer("AuthToken", {"token": serializers.CharField()})},
                    body=True,
                    public=True,
                ),
            )
            def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
                return super().post(request, *args, **kwargs)

        return DocumentedObtainAuthToken
