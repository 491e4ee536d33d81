"""Throttles."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache import cache as default_cache
from rest_framework.throttling import ScopedRateThrottle, SimpleRateThrottle

from config.cache import SharedRedisCache

if TYPE_CHECKING:
    from rest_framework.request import Request


class _AtomicRedisWindow(SimpleRateThrottle):
    """DRF's sliding window, counted in one atomic Redis round trip when the cache is our
    Redis: DRF reads and writes a pickled list (two round trips, and two concurrent requests
    can both take the last slot). Other caches (unit tests) take DRF's own path."""

    retry_after: float | None = None

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
