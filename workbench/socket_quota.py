"""How many websockets a user holds open, and how often they connect, across every Daphne.

A connect is admitted only if the user's connects in the last window are under the
`socket_connect` rate and their open sockets under WORKBENCH_MAX_SOCKETS_PER_USER; else the
consumer closes it with 4429 (docs/websocket.md). Counted in Redis, atomically (one Lua
script per connect, as the HTTP throttle does, core/throttles.py):

- `sockets:{user}` is a sorted set of the user's open sockets, scored by when their process
  last vouched for them (Redis's own clock, so hosts' clocks need not agree). Each process
  re-scores all of its sockets every stale/3 seconds in one round trip; entries older than
  WORKBENCH_SOCKET_STALE_SECONDS are ignored and dropped, so the sockets of a Daphne that
  died without closing them stop counting within that bound.
- `connects:{user}` is the sliding window of the user's recent connects.

Where the cache is not our Redis (unit tests), the same rules run on the Django cache,
without atomicity: good for one process only. An unreachable Redis admits the connect (a
quota guards against floods; it must not lock every user out on its own account).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
import weakref
from dataclasses import dataclass
from typing import Protocol, cast

from django.conf import settings
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

CLOSE_TOO_MANY = 4429
RATE_SCOPE = "socket_connect"
_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
UNREACHABLE = (RedisError, OSError)  # connection refused, timeouts, a restarting Redis


class Admission(enum.Enum):
    ADMITTED = 0
    TOO_MANY_SOCKETS = 1
    TOO_MANY_CONNECTS = 2


@dataclass(frozen=True)
class Limits:
    max_sockets: int  # 0: no cap
    stale_seconds: float
    connects: int  # per window; 0: no limit
    window: float

    @classmethod
    def from_settings(cls) -> Limits:
        rates = cast("dict[str, str | None]", settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"])
        rate = rates.get(RATE_SCOPE)
        connects, window = parse_rate(rate)
        return cls(
            max_sockets=max(0, settings.WORKBENCH_MAX_SOCKETS_PER_USER),
            stale_seconds=max(1.0, settings.WORKBENCH_SOCKET_STALE_SECONDS),
            connects=connects,
            window=window,
        )


def parse_rate(rate: str | None) -> tuple[int, float]:
    """DRF's rate syntax (`60/min`): (count, seconds); (0, 1.0) for no limit."""
    if not rate:
        return 0, 1.0
    count, _, period = rate.partition("/")
    return int(count), float(_PERIODS[period.strip()[:1]])


class Backend(Protocol):
    async def admit(self, user_id: int, socket_id: str, limits: Limits) -> Admission: ...

    async def release(self, user_id: int, socket_id: str) -> None: ...

    async def refresh(self, sockets: list[tuple[int, str]], limits: Limits) -> None: ...


def _keys(user_id: int) -> tuple[str, str]:
    prefix = settings.CACHES["default"].get("KEY_PREFIX") or "workbench"
    return f"{prefix}:sockets:{user_id}", f"{prefix}:connects:{user_id}"


class RedisBackend:
    """The counts in Redis, one atomic script per admission (see the module docstring)."""

    # KEYS: the user's sockets, the user's connects. ARGV: socket id, cap, stale bound, rate
    # count, rate window. 0: admitted; 1: too many sockets; 2: too many connects. A connect
    # the cap refuses still counts in the rate window, unlike a request the HTTP throttle
    # refuses: the rate bounds connect churn, however it ends. Redis's TIME, read before
    # the writes, is allowed since Redis 5 (scripts replicate their effects).
    _ADMIT = """
    local t = redis.call('TIME')
    local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
    local cap, stale = tonumber(ARGV[2]), tonumber(ARGV[3])
    local limit, window = tonumber(ARGV[4]), tonumber(ARGV[5])
    if limit > 0 then
        redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
        if redis.call('ZCARD', KEYS[2]) >= limit then
            return 2
        end
        redis.call('ZADD', KEYS[2], now, ARGV[1])
        redis.call('PEXPIRE', KEYS[2], math.ceil(window * 1000))
    end
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - stale)
    if cap > 0 and redis.call('ZCARD', KEYS[1]) >= cap then
        return 1
    end
    redis.call('ZADD', KEYS[1], now, ARGV[1])
    redis.call('PEXPIRE', KEYS[1], math.ceil(stale * 1000))
    return 0
    """
    # KEYS: each socket's user set; ARGV: the stale bound, then each socket's id. ZADD
    # without XX: a socket dropped meanwhile (say, by a Redis restart) is counted again.
    _REFRESH = """
    local t = redis.call('TIME')
    local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
    local ttl = math.ceil(tonumber(ARGV[1]) * 1000)
    for i, key in ipairs(KEYS) do
        redis.call('ZADD', key, now, ARGV[i + 1])
        redis.call('PEXPIRE', key, ttl)
    end
    return 0
    """
    REFRESH_BATCH = 500

    # A few connections, waited for in turn: a flood of connects must queue for them, not
    # open one each (redis-py then refuses past its limit, and the quota would go uncounted).
    MAX_CONNECTIONS = 8

    def __init__(self, url: str) -> None:
        import redis.asyncio

        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url, max_connections=self.MAX_CONNECTIONS, timeout=30, socket_timeout=5,
            socket_connect_timeout=5,
        )  # fmt: skip
        self.client = redis.asyncio.Redis(connection_pool=pool)
        self.admit_script = self.client.register_script(self._ADMIT)
        self.refresh_script = self.client.register_script(self._REFRESH)

    async def admit(self, user_id: int, socket_id: str, limits: Limits) -> Admission:
        args: list[str | int] = [socket_id, limits.max_sockets, repr(limits.stale_seconds),
                                 limits.connects, repr(limits.window)]  # fmt: skip
        return Admission(int(await self.admit_script(keys=list(_keys(user_id)), args=args)))

    async def release(self, user_id: int, socket_id: str) -> None:
        await self.client.zrem(_keys(user_id)[0], socket_id)

    async def refresh(self, sockets: list[tuple[int, str]], limits: Limits) -> None:
        for start in range(0, len(sockets), self.REFRESH_BATCH):
            batch = sockets[start : start + self.REFRESH_BATCH]
            await self.refresh_script(
                keys=[_keys(user_id)[0] for user_id, _ in batch],
                args=[repr(limits.stale_seconds), *(socket_id for _, socket_id in batch)],
            )


class CacheBackend:
    """The same rules on the Django cache (unit tests): not atomic, one process only."""

    def __init__(self) -> None:
        from django.core.cache import cache

        self.cache = cache

    async def admit(self, user_id: int, socket_id: str, limits: Limits) -> Admission:
        sockets_key, connects_key = _keys(user_id)
        now = time.time()
        if limits.connects:
            recent = [t for t in self.cache.get(connects_key, []) if t > now - limits.window]
            if len(recent) >= limits.connects:
                return Admission.TOO_MANY_CONNECTS
            self.cache.set(connects_key, [*recent, now], timeout=limits.window)
        held = self._live(sockets_key, now, limits)
        if limits.max_sockets and len(held) >= limits.max_sockets:
            return Admission.TOO_MANY_SOCKETS
        self.cache.set(sockets_key, {**held, socket_id: now}, timeout=limits.stale_seconds)
        return Admission.ADMITTED

    async def release(self, user_id: int, socket_id: str) -> None:
        sockets_key = _keys(user_id)[0]
        held = dict(self.cache.get(sockets_key, {}))
        held.pop(socket_id, None)
        self.cache.set(sockets_key, held)

    async def refresh(self, sockets: list[tuple[int, str]], limits: Limits) -> None:
        now = time.time()
        for user_id, socket_id in sockets:
            sockets_key = _keys(user_id)[0]
            held = self._live(sockets_key, now, limits)
            self.cache.set(sockets_key, {**held, socket_id: now}, timeout=limits.stale_seconds)

    def _live(self, key: str, now: float, limits: Limits) -> dict[str, float]:
        held: dict[str, float] = self.cache.get(key, {})
        return {s: t for s, t in held.items() if t > now - limits.stale_seconds}


def make_backend() -> Backend:
    """Redis when the default cache is Redis (django-redis), else the Django cache."""
    from django.core.cache import caches
    from django_redis.cache import RedisCache

    if isinstance(caches["default"], RedisCache):
        location = settings.CACHES["default"]["LOCATION"]
        return RedisBackend(str(location[0] if isinstance(location, list) else location))
    return CacheBackend()


class SocketLedger:
    """This process's (event loop's) admitted sockets, and the task that keeps vouching for
    them in Redis while they live."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.sockets: dict[str, int] = {}  # socket id -> user id
        self.refresher: asyncio.Task[None] | None = None

    async def admit(self, user_id: int, socket_id: str) -> Admission:
        limits = Limits.from_settings()
        try:
            admission = await self.backend.admit(user_id, socket_id, limits)
        except UNREACHABLE:
            logger.warning("socket quota not counted: Redis is unreachable", exc_info=True)
            return Admission.ADMITTED
        if admission is Admission.ADMITTED:
            self.sockets[socket_id] = user_id
            if self.refresher is None or self.refresher.done():
                loop = asyncio.get_running_loop()
                self.refresher = loop.create_task(self._refresh_while_held(limits))
        return admission

    async def release(self, socket_id: str) -> None:
        user_id = self.sockets.pop(socket_id, None)
        if user_id is None:
            return
        try:
            await self.backend.release(user_id, socket_id)
        except UNREACHABLE:  # it goes stale on its own
            logger.warning("socket quota not released: Redis is unreachable", exc_info=True)

    async def _refresh_while_held(self, limits: Limits) -> None:
        # A timer, not a wait for a condition: the entries must be re-scored while they live.
        while self.sockets:
            await asyncio.sleep(limits.stale_seconds / 3)
            held = [(user_id, socket_id) for socket_id, user_id in self.sockets.items()]
            if not held:
                return
            try:
                await self.backend.refresh(held, limits)
            except UNREACHABLE:  # the next round tries again
                logger.warning("socket quota not refreshed", exc_info=True)


# One ledger per event loop: Daphne has one; tests may run several in turn.
_ledgers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SocketLedger] = (
    weakref.WeakKeyDictionary()
)


def ledger() -> SocketLedger:
    """The running loop's ledger (made on first use)."""
    loop = asyncio.get_running_loop()
    found = _ledgers.get(loop)
    if found is None:
        found = _ledgers[loop] = SocketLedger(make_backend())
    return found
