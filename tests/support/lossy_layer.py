"""A channel layer that silently drops a share of group messages, to prove that clients
recover from the at-most-once broadcast by resuming from the event log.

Used by integration tests as WORKBENCH_CHANNEL_LAYER in a worker's environment, with
WORKBENCH_TEST_DROP_RATE (0..1) and WORKBENCH_TEST_DROP_SEED.
"""

from __future__ import annotations

import os
import random
from typing import Any

from channels_redis.pubsub import RedisPubSubChannelLayer


class LossyRedisPubSubChannelLayer(RedisPubSubChannelLayer):
    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.drop_rate = float(os.environ.get("WORKBENCH_TEST_DROP_RATE", "0.3"))
        self.random = random.Random(os.environ.get("WORKBENCH_TEST_DROP_SEED", "7"))
        self.dropped = 0

    async def group_send(self, group: str, message: dict) -> None:
        if self.random.random() < self.drop_rate:
            self.dropped += 1
            return
        await super().group_send(group, message)
