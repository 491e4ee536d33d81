"""Websocket routes, behind origin validation and session/token authentication."""

from __future__ import annotations

from typing import Any

from django.urls import path


def websocket_application(url_router: Any) -> Any:
    from workbench.auth import TokenOrSessionAuthMiddleware, origin_validator
    from workbench.consumers import WorkspaceConsumer

    routes = [path("ws/workspaces/<int:workspace_id>/", WorkspaceConsumer.as_asgi())]
    return origin_validator(TokenOrSessionAuthMiddleware(url_router(routes)))
