"""Each request's id: bound for its log lines (core/logs.py), answered as X-Request-ID."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core import logs

if TYPE_CHECKING:
    from collections.abc import Callable

    from django.http import HttpRequest, HttpResponse


def request_ids(
    get_response: Callable[[HttpRequest], HttpResponse],
) -> Callable[[HttpRequest], HttpResponse]:
    """Takes a client's plain X-Request-ID (a proxy's, to follow one request end to end),
    else makes one; every log line of the request carries it, and so does each Celery task
    it starts (a message header)."""

    def middleware(request: HttpRequest) -> HttpResponse:
        request_id = logs.request_id(request.headers.get("X-Request-ID"))
        with logs.scope(request=request_id):
            response = get_response(request)
        response["X-Request-ID"] = request_id
        return response

    return middleware
