"""The browser workbench: a server-rendered shell; everything else is the public REST API
and the websocket stream, driven by the JavaScript modules in static/workbench/."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse


def _content_security_policy(request: HttpRequest) -> str:
    """Only this origin's scripts, styles, API and websocket: no inline code to inject into."""
    host = request.get_host()
    return "; ".join(
        [
            "default-src 'self'",
            f"connect-src 'self' ws://{host} wss://{host}",  # older browsers: 'self' is not ws
            "img-src 'self' data:",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


@require_GET
@login_required
@ensure_csrf_cookie  # the page's REST calls send this cookie back as X-CSRFToken
def workbench_shell(request: HttpRequest) -> HttpResponse:
    """The page; which workspace, task and tab it shows lives in the URL fragment."""
    response = render(request, "workbench/shell.html")
    response["Content-Security-Policy"] = _content_security_policy(request)
    return response
