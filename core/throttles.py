"""Throttles: per-user rates on creations, per-IP and per-username rates on logins."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache import cache as default_cache
from rest_framework.throttling import ScopedRateThrottle, SimpleRateThrottle
from rest_framework.views import APIView

from core.cache import SharedRedisCache

if TYPE_CHECKING:
    from rest_framework.request import Request


class _AtomicRedisWindow(SimpleRateThrottle):
    """DRF's sliding window, counted in one atomic Redis round trip when the cache is our
    Redis: DRF reads and writes a pickled list (two round trips, and two concurrent requests
    can both take the last slot). Other caches (unit tests) take DRF's own path."""

    retry_after: float | None = None
    # Set by SimpleRateThrottle from the rate (its stubs do not declare them).
    duration: int
    num_requests: int

    def _redis(self) -> SharedRedisCache | None:
        backend = caches[DEFAULT_CACHE_ALIAS] if self.cache is default_cache else self.cache
        return backend if isinstance(backend, SharedRedisCache) else None

    def allow_request(self, request: Request, view: Any) -> bool:
        redis_cache = self._redis()
        if redis_cache is None:
            return super().allow_request(request, view)
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.retry_after = redis_cache.sliding_window_hit(
            self.key, now=self.timer(), window=self.duration, limit=self.num_requests
        )
        return self.retry_after is None

    def wait(self) -> float | None:
        if self.retry_after is not None:
            return self.retry_after
        return super().wait()


class CreateRateThrottle(ScopedRateThrottle, _AtomicRedisWindow):
    """A per-user rate on a view's POST only (reads of the same resource are not limited)."""

    def allow_request(self, request: Request, view: Any) -> bool:
        if request.method != "POST":
            return True
        return super().allow_request(request, view)


def submitted_username(request: Any) -> str | None:
    """The username a login request names (a DRF request's data, or a Django form's POST)."""
    from rest_framework.request import Request

    data = request.data if isinstance(request, Request) else request.POST
    username = data.get("username") if hasattr(data, "get") else None
    return username.strip().casefold() if isinstance(username, str) and username.strip() else None


class LoginRateThrottle(_AtomicRedisWindow):
    """Login attempts per client IP (DRF's anonymous-style ident: the peer address)."""

    scope = "login"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class LoginUsernameRateThrottle(_AtomicRedisWindow):
    """Login attempts per username, wherever they come from: one account cannot be guessed
    at from many addresses faster than from one."""

    scope = "login_username"

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        username = submitted_username(request)
        if username is None:
            return None
        # Hashed: any text fits a key, and no username is stored in the cache.
        ident = hashlib.sha256(username.encode()).hexdigest()
        return self.cache_format % {"scope": self.scope, "ident": ident}


LOGIN_THROTTLES: tuple[type[SimpleRateThrottle], ...] = (
    LoginRateThrottle,
    LoginUsernameRateThrottle,
)


def login_refused_for(request: Any) -> float | None:
    """Check (and count) a login attempt against every login throttle, for views that are
    not DRF's (the browser's login form): None if allowed, else the seconds to wait."""
    waits = []
    for throttle_class in LOGIN_THROTTLES:
        throttle = throttle_class()
        if not throttle.allow_request(request, APIView()):  # no DRF view: a bare one
            waits.append(throttle.wait() or 1.0)
    return max(waits) if waits else None
