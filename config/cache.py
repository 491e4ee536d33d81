"""The Redis cache backend, with one client (and connection pool) per process."""

from __future__ import annotations

import threading
from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.utils.functional import cached_property

_clients: dict[str, RedisCacheClient] = {}
_lock = threading.Lock()


class SharedRedisCache(RedisCache):
    """Django's RedisCache, sharing one client per process instead of one per thread.

    Django keeps a cache object per thread, and each made its own connection pool. Under
    Daphne every request runs in a new thread, so every throttled request opened a new Redis
    connection (connect, HELLO, CLIENT SETINFO: ~1 ms of CPU, docs/benchmarks.md). redis-py's
    pools are thread-safe, and reset themselves in a forked child. The shared pool blocks
    (up to 5 s) for a free connection when more threads than connections want one at once,
    instead of failing as redis-py's default pool does past 100.
    """

    def __init__(self, server: Any, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._options = {
            "pool_class": "redis.BlockingConnectionPool",
            "max_connections": 64,
            "timeout": 5,
            **self._options,
        }

    @cached_property
    def _cache(self) -> Any:
        key = repr((self._servers, sorted(self._options.items())))
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = self._class(self._servers, **self._options)
        return client
