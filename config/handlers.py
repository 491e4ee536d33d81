"""Django's ASGI handler, with each request run synchronously on a reused request thread."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.db import close_old_connections
from django.http import FileResponse

from workbench import workflows

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponseBase


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
