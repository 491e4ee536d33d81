"""Daphne, refusing a request body over WORKBENCH_MAX_BODY_BYTES before reading it.

Run it as `daphne`, with the same arguments:
`python -m config.server -b 127.0.0.1 -p 8000 config.asgi:application`.

Daphne (Twisted) receives a request's whole body, then queues all of it in memory for the
application, before the application sees the request (https://github.com/django/daphne/issues/253,
a duplicate of django/daphne#126): an application cannot refuse a large body unread, so a
150 MB anonymous POST was read in full before its 401. Here the request answers 413 with the
API's error body as soon as its headers announce too long a body, or its chunks (a chunked
body) pass the limit, and closes the connection: Twisted stops reading the socket, the rest of
the body is never received, and the application never runs.

Measured with a 150 MB anonymous POST: plain Daphne's RSS grew by 146 MiB and stayed there
(by as much again with only the ASGI handler's own 413, config/handlers.py); here by 0.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from daphne.cli import CommandLineInterface
from daphne.http_protocol import HTTPFactory, WebRequest
from daphne.server import Server

if TYPE_CHECKING:
    from collections.abc import Mapping

logger = logging.getLogger("config.server")  # not __name__: run with -m, that is __main__


def http_response(status: str, body: Mapping[str, Any]) -> bytes:
    """A complete HTTP/1.1 response with a JSON body, ending the connection."""
    content = json.dumps(body, separators=(",", ":")).encode()
    head = (
        f"HTTP/1.1 {status}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(content)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + content


class BoundedRequest(WebRequest):
    """Daphne's request, answering 413 once its body is known to be over the limit.

    Twisted calls gotLength at the end of the headers (None for a chunked body), then
    handleContentChunk for each piece of the body, then requestReceived, which starts the
    application.
    """

    refused = False
    received = 0

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > self.server.max_body_bytes:
            self.refuse()
            length = 0  # keeps none of the body: no temporary file for it
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.refused:
            return  # the rest of what one read of the socket brought
        self.received += len(data)
        if self.received > self.server.max_body_bytes:
            self.refuse()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if not self.refused:  # else a small chunked body ended in the read that refused it
            super().requestReceived(command, path, version)

    def refuse(self) -> None:
        """Answer 413 and close, as Twisted answers a request it cannot parse."""
        self.refused = True
        # Twisted answers `Expect: 100-continue` just after gotLength: not after this answer.
        self.requestHeaders.removeHeader(b"Expect")
        logger.info("413: refused a request body over %d bytes", self.server.max_body_bytes)
        self.channel.transport.write(self.server.too_large_response)
        self.channel.loseConnection()


class BoundedHTTPFactory(HTTPFactory):
    """Daphne's HTTP factory, with BoundedRequest for each request."""

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = BoundedRequest
        return protocol


class BoundedServer(Server):
    """Daphne's server, listening through BoundedHTTPFactory."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Loading the application (config.asgi) has set Django up by now.
        from django.conf import settings

        from config.api import too_large_error

        self.max_body_bytes: int = settings.WORKBENCH_MAX_BODY_BYTES
        self.too_large_response = http_response("413 Content Too Large", too_large_error())
        from workbench.snapshots import start_builders

        start_builders()

    # Server.run() builds Daphne's own HTTPFactory and listens on it at once, with no hook
    # in between: assigning it here installs ours instead.
    @property
    def http_factory(self) -> HTTPFactory:
        return self._http_factory

    @http_factory.setter
    def http_factory(self, factory: HTTPFactory) -> None:
        bounded = isinstance(factory, BoundedHTTPFactory)
        self._http_factory = factory if bounded else BoundedHTTPFactory(self)


class BoundedCommandLineInterface(CommandLineInterface):
    server_class = BoundedServer


if __name__ == "__main__":
    BoundedCommandLineInterface.entrypoint()
