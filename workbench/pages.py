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


@require_GET
@login_required
@ensure_csrf_cookie  # the page's REST calls send this cookie back as X-CSRFToken
def workbench_shell(request: HttpRequest) -> HttpResponse:
    """The page; which workspace, task and tab it shows lives in the URL fragment."""
    return render(request, "workbench/shell.html")
