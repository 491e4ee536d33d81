"""Websocket routes, behind origin validation and session/token authentication."""

from __future__ import annotations

from typing import Any

from django.urls import path


def websocket_application(url_router: Any) -> Any:
    from channels.security.websocket import AllowedHostsOriginValidator

    from workbench.auth import TokenOrSessionAuthMiddleware
    from workbench.consumers import WorkspaceConsumer

    routes = [path("ws/workspaces/<int:workspace_id>/", WorkspaceConsumer.as_asgi())]
    return AllowedHostsOriginValidator(TokenOrSessionAuthMiddleware(url_router(routes)))
