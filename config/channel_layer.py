"""The channel layer: channels-redis's pub/sub layer, made to survive a Redis restart.

channels-redis keeps one pub/sub connection per process and never replaces it: after Redis
restarts, `group_add` fails on the dead socket (a websocket connect then answers 500) and
every subscription of the process stays silent until Daphne restarts. Here a connection
error rebuilds the connection and subscribes again to everything the process had. Events
published meanwhile are lost, as any broadcast may be: clients resume from the event log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import redis.exceptions
from channels_redis.pubsub import (
    RedisPubSubChannelLayer,
    RedisPubSubLoopLayer,
    RedisSingleShardConnection,
)

logger = logging.getLogger(__name__)
_LOST = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, ConnectionError)


class _ReconnectingShard(RedisSingleShardConnection):
    async def publish(self, channel: str, message: Any) -> None:
        try:
            await super().publish(channel, message)
        except _LOST:
            await self._reconnect()
            await super().publish(channel, message)

    # channels_redis's own state, which _reconnect resets (the library is untyped).
    _pubsub: Any
    _redis: Any
    _subscribed_to: set[str]
    _receive_task: asyncio.Task[None] | None
    _lock: asyncio.Lock

    async def subscribe(self, channel: str) -> None:
        try:
            await super().subscribe(channel)
        except _LOST:
            await self._reconnect()
            await super().subscribe(channel)

    async def _do_receiving(self) -> None:
        while True:
            try:
                if self._pubsub and self._pubsub.subscribed:
                    message = await self._pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=0.1
                    )
                    self._receive_message(message)
                else:
                    await asyncio.sleep(0.1)
            except _LOST:
                logger.warning("channel layer lost Redis; reconnecting and resubscribing")
                await asyncio.sleep(0.5)
                # A new task does it: _reconnect cancels this one.
                asyncio.get_running_loop().create_task(self._reconnect())
                return

    async def _reconnect(self) -> None:
        """Drop the dead connection, then subscribe again to every channel we had."""
        async with self._lock:
            channels = set(self._subscribed_to)
            task, self._receive_task = self._receive_task, None
            if task is not None and task is not asyncio.current_task():
                task.cancel()
            if self._redis is not None:
                with contextlib.suppress(Exception):
                    await self._redis.aclose()
            self._redis = self._pubsub = None
            self._subscribed_to = set()
        for channel in channels:
            try:
                await super().subscribe(channel)
            except _LOST:
                logger.warning("resubscribing %s failed; the next call retries", channel)
                return


class _ReconnectingLoopLayer(RedisPubSubLoopLayer):
    _shards: list[Any]

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._shards = [_ReconnectingShard(shard.host, self) for shard in self._shards]


class ReconnectingRedisPubSubChannelLayer(RedisPubSubChannelLayer):
    def _get_layer(self) -> RedisPubSubLoopLayer:
        loop = asyncio.get_running_loop()
        if loop not in self._layers:
            from channels_redis.pubsub import _wrap_close

            self._layers[loop] = _ReconnectingLoopLayer(
                *self._args, **self._kwargs, channel_layer=self
            )
            _wrap_close(self, loop)
        return self._layers[loop]
