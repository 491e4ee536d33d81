"""URL routes: the browser workbench, the JSON API under /api/, its schema and docs, health,
and the admin."""

from __future__ import annotations

import sys

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config.api import DATABASE_UNAVAILABLE, RETRY_AFTER_SECONDS, UNAVAILABLE_MESSAGE
from config.health import healthz, readyz
from core import views as core_views
from core.errors import error_body
from tasks_app import views as task_views
from workbench import pages, views
from workbench.metrics import metrics_view

api = [
    path("auth/token/", views.AuthTokenView.as_view(), name="api-token"),
    path("workspaces/", core_views.WorkspaceListView.as_view(), name="workspace-list"),
    path("agents/", task_views.AgentListView.as_view(), name="agent-list"),
    path(
        "workspaces/<int:workspace_id>/members/",
        core_views.WorkspaceMemberListView.as_view(),
        name="workspace-members",
    ),
    path(
        "workspaces/<int:workspace_id>/members/<int:user_id>/",
        core_views.WorkspaceMemberDetailView.as_view(),
        name="workspace-member",
    ),
    path(
        "workspaces/<int:workspace_id>/tasks/",
        views.WorkspaceTaskListView.as_view(),
        name="workspace-tasks",
    ),
    path(
        "workspaces/<int:workspace_id>/workbench/",
        views.WorkbenchSnapshotView.as_view(),
        name="workspace-workbench",
    ),
    path("tasks/<int:task_id>/", task_views.TaskDetailView.as_view(), name="task-detail"),
    path("tasks/<int:task_id>/archive/", views.TaskArchiveView.as_view(), name="task-archive"),
    path("tasks/<int:task_id>/tabs/", views.TaskTabListView.as_view(), name="task-tabs"),
    path("tabs/<uuid:tab_id>/", views.TabDetailView.as_view(), name="tab-detail"),
    path("tabs/<uuid:tab_id>/retry/", views.TabRetryView.as_view(), name="tab-retry"),
    path("tabs/<uuid:tab_id>/messages/", views.TabMessageListView.as_view(), name="tab-messages"),
    path("tabs/<uuid:tab_id>/cancel/", views.TabCancelView.as_view(), name="tab-cancel"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]

urlpatterns = [
    path("", pages.workbench_shell, name="workbench"),
    path("accounts/login/", pages.LoginView.as_view(), name="login"),  # throttled
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),  # POST only
    path("api/", include(api)),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/login/", pages.admin_login),  # before the admin's own: throttled the same
    path("admin/", admin.site.urls),
]


def handler400(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    # Django's own refusals before any view: a Host not in ALLOWED_HOSTS, a malformed
    # request (SuspiciousOperation). The API's error body, never Django's HTML page.
    return JsonResponse(
        error_body("bad_request", "The request was refused as malformed."), status=400
    )


def handler404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body("not_found", f"No route for {request.path}."), status=404)


def handler500(request: HttpRequest) -> JsonResponse:
    # Django calls this while handling the exception: a database that is unavailable (outside
    # DRF's views, e.g. a session lookup) is a 503 to retry, as the API's handler answers.
    if isinstance(sys.exc_info()[1], DATABASE_UNAVAILABLE):
        response = JsonResponse(error_body("unavailable", UNAVAILABLE_MESSAGE), status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    return JsonResponse(error_body("server_error", "Internal error."), status=500)
