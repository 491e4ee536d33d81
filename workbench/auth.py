"""Websocket authentication: the browser's session cookie, or a DRF token for other clients
(`Authorization: Token <key>` header, or `?token=<key>` where headers cannot be set)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.security.websocket import WebsocketDenier
from django.contrib.auth.models import AnonymousUser

from workbench.origins import origin_allowed


@database_sync_to_async
def _user_for_token(key: str) -> Any:
    from rest_framework.authtoken.models import Token

    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return AnonymousUser()
    return token.user


def _token_from_scope(scope: dict) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            kind, _, key = value.decode("latin-1").partition(" ")
            if kind.lower() == "token" and key:
                return key.strip()
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return (query.get("token") or [None])[0]


class _TokenAuthMiddleware:
    def __init__(self, inner: Any):
        self.inner = inner

    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        key = _token_from_scope(scope)
        if key:
            scope = {**scope, "user": await _user_for_token(key)}
        return await self.inner(scope, receive, send)


def TokenOrSessionAuthMiddleware(inner: Any) -> Any:
    """Session auth first (sets scope['user']); a token, when given, takes precedence."""
    return AuthMiddlewareStack(_TokenAuthMiddleware(inner))


class BrowserOriginValidator:
    """Refuse browser connections from other origins (HTTP 403 at the handshake); let
    non-browser clients in.

    Browsers always send Origin on websockets, so a missing Origin is a script or server
    (which must then authenticate with a token: it has no victim's cookie to ride on).
    Channels' own validator refuses those too, which would lock out every API client, and
    ignores the port (see workbench/origins.py). Settings are read per connection, so a test
    that changes them is seen at once.
    """

    def __init__(self, application: Any):
        self.application = application

    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        headers = dict(scope.get("headers", []))
        origin = headers.get(b"origin")
        if origin is not None and not _origin_allowed(origin, headers, scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)


def _origin_allowed(origin: bytes, headers: dict[bytes, bytes], scope: dict) -> bool:
    from django.conf import settings

    host = headers.get(b"host")
    return origin_allowed(
        origin.decode("latin-1"),
        host_header=host.decode("latin-1") if host is not None else None,
        secure=_is_secure(headers, scope),
        trusted_origins=settings.CSRF_TRUSTED_ORIGINS,
        allowed_hosts=settings.ALLOWED_HOSTS,
    )


def _is_secure(headers: dict[bytes, bytes], scope: dict) -> bool:
    """wss://, or a TLS-terminating proxy's header (SECURE_PROXY_SSL_HEADER), as Django's
    request.is_secure() reads it for the CSRF check."""
    from django.conf import settings

    if scope.get("scheme") == "wss":
        return True
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if not proxy_header:
        return False
    name, expected = proxy_header
    header = name.removeprefix("HTTP_").replace("_", "-").lower().encode("latin-1")
    value = headers.get(header, b"").decode("latin-1").split(",")[0].strip()
    return value == expected


def origin_validator(inner: Any) -> BrowserOriginValidator:
    """Allowed: CSRF_TRUSTED_ORIGINS, and the request's own origin on an ALLOWED_HOSTS host."""
    return BrowserOriginValidator(inner)
