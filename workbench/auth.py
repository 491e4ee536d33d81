"""Websocket authentication: the browser's session cookie, or a DRF token for other clients
(`Authorization: Token <key>` header, or `?token=<key>` where headers cannot be set)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.security.websocket import OriginValidator
from django.contrib.auth.models import AnonymousUser


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


class BrowserOriginValidator(OriginValidator):
    """Refuse browser connections from other sites; let non-browser clients in.

    Browsers always send Origin on websockets, so a missing Origin is a script or server
    (which must then authenticate with a token: it has no victim's cookie to ride on).
    Channels' own validator refuses those too, which would lock out every API client.
    """

    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        if not any(name == b"origin" for name, _ in scope.get("headers", [])):
            return await self.application(scope, receive, send)
        return await super().__call__(scope, receive, send)


def origin_validator(inner: Any) -> BrowserOriginValidator:
    """Allowed: the ALLOWED_HOSTS, and the hosts of CSRF_TRUSTED_ORIGINS."""
    from urllib.parse import urlparse

    from django.conf import settings

    trusted = [urlparse(origin).netloc for origin in settings.CSRF_TRUSTED_ORIGINS]
    return BrowserOriginValidator(inner, [*settings.ALLOWED_HOSTS, *trusted])
