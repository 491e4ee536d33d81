"""The browser workbench: a server-rendered shell; everything else is the public REST API
and the websocket stream, driven by the JavaScript modules in static/workbench/."""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET

from core.throttles import login_refused_for

if TYPE_CHECKING:
    from django.http import HttpRequest


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


# The browser workbench's own modules (workbench/static/workbench/, its .d.ts types aside).
MODULES = Path(__file__).resolve().parent / "static" / "workbench"


@functools.cache
def browser_modules() -> list[str]:
    """The static paths of the modules app.js imports, directly or not. The page lists them
    as modulepreload: the browser otherwise finds each import level only once the level
    above it has arrived, about eight round trips in a row before the first render."""
    return sorted(
        path.relative_to(MODULES.parent).as_posix()
        for path in MODULES.rglob("*.js")
        if path.name != "app.js" and "types" not in path.relative_to(MODULES).parts
    )


@require_GET
@login_required
@ensure_csrf_cookie  # the page's REST calls send this cookie back as X-CSRFToken
def workbench_shell(request: HttpRequest) -> HttpResponse:
    """The page; which workspace, task and tab it shows lives in the URL fragment."""
    response = render(request, "workbench/shell.html", {"modules": browser_modules()})
    response["Content-Security-Policy"] = _content_security_policy(request)
    return response


def _throttled_message(seconds: int) -> str:
    return f"Too many login attempts. Try again in {seconds} seconds."


class LoginView(auth_views.LoginView):
    """Django's login form, with the token endpoint's throttles (per client IP and per
    username): a refused attempt is not checked at all and gets 429 with Retry-After."""

    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        wait = login_refused_for(request)
        if wait is None:
            return super().post(request, *args, **kwargs)
        seconds = max(1, math.ceil(wait))
        # The form is not validated: no password is checked while the attempts are refused.
        context = self.get_context_data(throttled=_throttled_message(seconds))
        response = self.render_to_response(context, status=429)
        response["Retry-After"] = str(seconds)
        return response


def admin_login(request: HttpRequest) -> HttpResponse:
    """The admin's login form behind the same throttles: it takes passwords too."""
    from django.contrib import admin

    wait = login_refused_for(request) if request.method == "POST" else None
    if wait is None:
        return admin.site.login(request)
    seconds = max(1, math.ceil(wait))
    message = _throttled_message(seconds) + "\n"
    response = HttpResponse(message, status=429, content_type="text/plain")
    response["Retry-After"] = str(seconds)
    return response
