"""Who is viewing which tab, so an agent reply marks a tab unread only for the members who
are not looking at it (DESIGN: "an agent reply in a tab I am not viewing marks it unread").

A socket says which tab its page shows (the `view` frame, workbench.consumers). Each tab
has a sorted set in Redis, `user:socket` scored by when the claim lapses: a socket renews
it with every heartbeat and removes it when it leaves, and a Daphne that dies leaves
claims that lapse within VIEW_SECONDS (until then, a reply there is not marked unread for
that member; they see it when they come back). Redis, not the database: this is written
with every heartbeat of every viewing socket and is worthless after a minute.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import redis
import redis.asyncio
from django.conf import settings

if TYPE_CHECKING:
    from uuid import UUID

logger = logging.getLogger(__name__)

# Three heartbeats of the browser's stream (10 s each) and some slack.
VIEW_SECONDS = 45


def _key(tab_id: UUID | str) -> str:
    return f"workbench:viewers:{tab_id}"


class ViewerClaims:
    """One socket's claim on the tab it views (the consumer holds one)."""

    def __init__(self, user_id: int, socket_id: str) -> None:
        self.member = f"{user_id}:{socket_id}"
        self.tab: str | None = None
        self._client: redis.asyncio.Redis | None = None

    def _redis(self) -> redis.asyncio.Redis:
        if self._client is None:
            self._client = redis.asyncio.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
        return self._client

    async def view(self, tab: str | None) -> None:
        """Now viewing `tab` (None: no tab, or the page is hidden)."""
        previous = self.tab
        now = time.time()
        try:
            async with self._redis().pipeline(transaction=False) as pipe:
                if previous is not None and previous != tab:
                    pipe.zrem(_key(previous), self.member)
                if tab is not None:
                    # Claims of sockets that died without leaving lapse here, so a tab
                    # watched without a pause does not collect them forever.
                    pipe.zremrangebyscore(_key(tab), "-inf", now)
                    pipe.zadd(_key(tab), {self.member: now + VIEW_SECONDS})
                    pipe.expire(_key(tab), VIEW_SECONDS)
                await pipe.execute()
        except redis.RedisError as exc:
            # The previous claim stays recorded as this socket's, to be removed next time.
            logger.warning("cannot record who views tab %s (%s)", tab, exc)
            return
        self.tab = tab

    async def renew(self) -> None:
        if self.tab is not None:
            await self.view(self.tab)

    async def close(self) -> None:
        await self.view(None)
        if self._client is not None:
            await self._client.aclose()
            self._client = None


_client: redis.Redis | None = None


def viewers(tab_id: UUID | str) -> set[int]:
    """The members viewing the tab now (empty when Redis cannot say: a reply is then
    marked unread for everyone, which errs towards showing it)."""
    global _client
    try:
        if _client is None:  # thread-safe: redis-py's pool hands each thread a connection
            _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
        claims = _client.zrangebyscore(_key(tab_id), time.time(), "+inf")
    except redis.RedisError as exc:
        logger.warning("cannot read who views tab %s (%s)", tab_id, exc)
        return set()
    return {int(bytes(claim).split(b":", 1)[0]) for claim in claims}  # type: ignore[arg-type]
