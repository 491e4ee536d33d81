"""Django's ASGI handler, with each request run synchronously on a reused request thread."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.db import close_old_connections
from django.http import FileResponse, JsonResponse

from config.api import too_large_error
from workbench import workflows

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from django.http import HttpRequest, HttpResponseBase

    Scope = dict[str, Any]
    Receive = Callable[[], Awaitable[dict[str, Any]]]


class BodyTooLarge(Exception):
    """The request's body is over WORKBENCH_MAX_BODY_BYTES: answer 413, read no more of it."""


def declared_length(scope: Scope) -> int:
    """The request's Content-Length (0 when absent or malformed, as Django reads it)."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            return int(value) if value.isdigit() else 0
    return 0


def bounded(receive: Receive, limit: int) -> Receive:
    """`receive`, raising BodyTooLarge once the body chunks received pass `limit` bytes."""
    received = 0

    async def receive_bounded() -> dict[str, Any]:
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise BodyTooLarge
        return message

    return receive_bounded


class SyncChainASGIHandler(ASGIHandler):
    """Runs the middleware chain and the view in one pooled thread per request, as a
    threaded WSGI server does.

    - The stock handler builds the chain in async mode, where every hook of a sync
      (`MiddlewareMixin`) middleware crosses into the request's thread on its own: about a
      dozen `sync_to_async` hops per request, ~1 ms of Daphne's CPU. Our middleware and
      views are all sync, so the whole chain runs in one hop.
    - The stock handler runs the view on the thread of the request's ThreadSensitiveContext,
      new for every request, and with it a new database connection (SQLite: connect and two
      PRAGMAs). A fixed pool of WORKBENCH_REQUEST_THREADS threads is reused instead, so
      connections persist for CONN_MAX_AGE; requests beyond the pool wait in its queue
      (async, costing nothing) rather than queueing for database connections, where they
      would time out as 500s. The context's own thread still runs Django's request signals:
      without it they would share the one thread websocket consumers' queries run on.
    - Celery publishes a request commits are handed to a background thread
      (workflows.publishing_in_background): the response does not wait for the broker.
    """

    def __init__(self) -> None:
        super().__init__()
        self.executor = ThreadPoolExecutor(
            max_workers=settings.WORKBENCH_REQUEST_THREADS, thread_name_prefix="request"
        )

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    async def handle(  # type: ignore[override]  # the same callable; Django's stub says Mapping
        self, scope: Scope, receive: Receive, send: Any
    ) -> None:
        """ASGIHandler.handle, answering 413 for a body over WORKBENCH_MAX_BODY_BYTES: at once
        when Content-Length says so, else as soon as the chunks read pass it.

        Under config/server.py Daphne has refused such a body before the application sees it;
        this holds under any other ASGI server (or plain `daphne`), where the stock handler
        would spool all of it to a temporary file first.
        """
        limit = settings.WORKBENCH_MAX_BODY_BYTES
        try:
            if declared_length(scope) > limit:
                raise BodyTooLarge
            await super().handle(scope, bounded(receive, limit), send)
        except BodyTooLarge:
            await self.send_response(JsonResponse(too_large_error(), status=413), send)

    async def run_get_response(self, request: HttpRequest) -> HttpResponseBase:
        response = await sync_to_async(
            self._respond, thread_sensitive=False, executor=self.executor
        )(request)
        response._handler_class = self.__class__  # type: ignore[attr-defined]
        # As ASGIHandler does: the ASGI server chunks file responses itself.
        if isinstance(response, FileResponse):
            response.block_size = self.chunk_size
        return response

    def _respond(self, request: HttpRequest) -> HttpResponseBase:
        # Django's request_started/finished handlers run on another thread here, so this
        # thread drops its own broken or expired connections, before and after, as they would.
        close_old_connections()
        try:
            with workflows.publishing_in_background():
                return self.get_response(request)
        finally:
            close_old_connections()
