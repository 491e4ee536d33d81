"""Throttles: per-user rates on creations, per-IP and per-username rates on logins."""

from __future__ import annotations

import hashlib
import logging
import uuid
from typing import TYPE_CHECKING, Any

from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache import cache as default_cache
from django_redis.cache import RedisCache
from redis.exceptions import RedisError
from rest_framework.throttling import ScopedRateThrottle, SimpleRateThrottle
from rest_framework.views import APIView

if TYPE_CHECKING:
    from rest_framework.request import Request


logger = logging.getLogger(__name__)

# One atomic round trip: drop hits older than the window, count the rest, and record this
# one if under the limit; else answer how long until the oldest hit leaves the window.
SLIDING_WINDOW = """
local key, now, window, limit = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
if redis.call('ZCARD', key) < limit then
    redis.call('ZADD', key, now, ARGV[4])
    redis.call('PEXPIRE', key, math.ceil(window * 1000))
    return nil
end
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return tostring(tonumber(oldest[2]) + window - now)
"""
_script: Any = None  # the script's object (its SHA), made once, run on any client


def _sliding_window(client: Any) -> Any:
    global _script
    if _script is None:  # two threads making it at once make the same script
        _script = client.register_script(SLIDING_WINDOW)
    return _script


def sliding_window_hit(
    cache: RedisCache, key: str, *, now: float, window: float, limit: int
) -> float | None:
    """Count a hit on `key` if fewer than `limit` fell in the last `window` seconds (None);
    otherwise count nothing and return the seconds until one slot frees.

    What DRF's throttles do with a get and a set of a pickled list, in one atomic round
    trip: concurrent requests cannot both take the last slot.
    """
    # A sorted set under its own key: DRF's path stores a pickled list under `key`.
    key = cache.make_and_validate_key(f"{key}:window")
    try:
        client = cache.client.get_client(write=True)
        wait = _sliding_window(client)(
            keys=[key], args=[repr(now), repr(window), limit, uuid.uuid4().hex], client=client
        )
    except RedisError:
        # A throttle guards against floods; an unreachable Redis must not refuse every
        # request on its own account (what the request needs Redis for fails on its own).
        logger.warning("throttle not counted: Redis is unreachable", exc_info=True)
        return None
    return None if wait is None else max(0.0, float(wait))


class _AtomicRedisWindow(SimpleRateThrottle):
    """DRF's sliding window, counted in one atomic Redis round trip when the cache is our
    Redis: DRF reads and writes a pickled list (two round trips, and two concurrent requests
    can both take the last slot). Other caches (unit tests) take DRF's own path."""

    retry_after: float | None = None
    # Set by SimpleRateThrottle from the rate (its stubs do not declare them).
    duration: int
    num_requests: int

    def _redis(self) -> RedisCache | None:
        backend = caches[DEFAULT_CACHE_ALIAS] if self.cache is default_cache else self.cache
        return backend if isinstance(backend, RedisCache) else None

    def allow_request(self, request: Request, view: Any) -> bool:
        redis_cache = self._redis()
        if redis_cache is None:
            return super().allow_request(request, view)
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.retry_after = sliding_window_hit(
            redis_cache, self.key, now=self.timer(), window=self.duration, limit=self.num_requests
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
