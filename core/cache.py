"""The Redis cache backend, with one client (and connection pool) per process."""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.utils.functional import cached_property
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

_clients: dict[str, RedisCacheClient] = {}
_scripts: dict[int, Any] = {}  # registered Lua scripts, per redis client
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

    # Django's RedisCache keeps these as private attributes (not in its stubs).
    _servers: list[str]
    _class: type
    _options: dict[str, Any]

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

    # One atomic round trip: drop hits older than the window, count the rest, and record this
    # one if under the limit; else answer how long until the oldest hit leaves the window.
    _SLIDING_WINDOW = """
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

    def sliding_window_hit(
        self, key: str, *, now: float, window: float, limit: int
    ) -> float | None:
        """Count a hit on `key` if fewer than `limit` fell in the last `window` seconds
        (None); otherwise count nothing and return the seconds until one slot frees.

        What DRF's throttles do with a get and a set of a pickled list, in one atomic
        round trip: concurrent requests cannot both take the last slot.
        """
        # A sorted set under its own key: DRF's path stores a pickled list under `key`.
        key = self.make_and_validate_key(f"{key}:window")
        client = self._cache.get_client(key, write=True)
        script = _scripts.get(id(client))
        if script is None:
            script = _scripts[id(client)] = client.register_script(self._SLIDING_WINDOW)
        try:
            wait = script(keys=[key], args=[repr(now), repr(window), limit, uuid.uuid4().hex])
        except RedisError:
            # A throttle guards against floods; an unreachable Redis must not refuse every
            # request on its own account (what the request needs Redis for fails on its own).
            logger.warning("throttle not counted: Redis is unreachable", exc_info=True)
            return None
        return None if wait is None else max(0.0, float(wait))
