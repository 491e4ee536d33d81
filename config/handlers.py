"""Django's ASGI handler, with the middleware chain run synchronously in the request's thread."""

from __future__ import annotations

from typing import TYPE_CHECKING

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.http import FileResponse

from workbench import workflows

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponseBase


class SyncChainASGIHandler(ASGIHandler):
    """Runs the middleware chain and the view in one worker thread per request, as WSGI does.

    The stock handler builds the chain in async mode, where every hook of a sync
    (`MiddlewareMixin`) middleware crosses into the request's worker thread on its own:
    about a dozen `sync_to_async` hops per request, measured at ~1 ms of Daphne's CPU
    (docs/benchmarks.md). Our middleware and views are all sync, so nothing gains from the
    async chain. Requests still run concurrently, each in its own thread, as before.

    Celery publishes a request commits are handed to a background thread
    (workflows.publishing_in_background): the response does not wait for the broker.
    """

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    async def run_get_response(self, request: HttpRequest) -> HttpResponseBase:
        with workflows.publishing_in_background():
            response = await sync_to_async(self.get_response, thread_sensitive=True)(request)
        response._handler_class = self.__class__  # type: ignore[attr-defined]
        # As ASGIHandler does: the ASGI server chunks file responses itself.
        if isinstance(response, FileResponse):
            response.block_size = self.chunk_size
        return response
