"""How far each work queue has got, so the reconciler judges every row by its own queue.

Celery's Redis transport keeps a queue as a list, pushed on the left and taken from the
right: first in, first out. Every message carries the time it was published (a header,
stamped in config/celery.py), so the message at the right end tells how far the queue has
got: a row whose message was sent before that one's has had its message taken. If such a
row still shows no progress, its message was lost (a killed worker, a flushed Redis), not
queued, and re-driving it is right even while the queue is long. A row sent after it may
still be waiting its turn, and is left alone.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

SENT_AT = "workbench_sent_at"
# Clock skew between hosts, and the gap between a row's commit (the time it records) and
# its message's publish after commit: a row counts as passed only this far behind.
SKEW = timedelta(seconds=5)


def stamp(headers: dict[str, Any]) -> None:
    """Record the publish time in a message's headers (before_task_publish)."""
    headers.setdefault(SENT_AT, time.time())


def queue_of(task_name: str) -> str:
    """The queue a Celery task is routed to (CELERY_TASK_ROUTES)."""
    route = settings.CELERY_TASK_ROUTES.get(task_name, {})
    return str(route.get("queue", settings.CELERY_TASK_DEFAULT_QUEUE))


def oldest_waiting(queues: list[str]) -> dict[str, float]:
    """Per queue with messages waiting, the publish time (epoch seconds) of the oldest.

    Queues that are empty, and every queue when Redis does not answer, are left out: their
    rows are judged by their own silence alone. A message without the header (published
    by an older release) counts as the oldest possible, which holds back every row of its
    queue until it is taken; that errs towards waiting, never towards a duplicate.
    """
    import redis

    try:
        client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=1)
        with client.pipeline(transaction=False) as pipe:
            for name in queues:
                pipe.lindex(name, -1)
            raw = pipe.execute()
    except redis.RedisError as exc:
        logger.warning("cannot read the work queues (%s); judging rows by silence alone", exc)
        return {}
    found: dict[str, float] = {}
    for name, message in zip(queues, raw, strict=True):
        if message is not None:
            found[name] = _sent_at(message)
    return found


def _sent_at(message: bytes) -> float:
    try:
        return float(json.loads(message)["headers"][SENT_AT])
    except (ValueError, KeyError, TypeError):
        return 0.0  # as if sent at the epoch: every row on its queue is still behind it


def passed_before(queue: str, waiting: dict[str, float], *, silent_since: datetime) -> datetime:
    """The moment before which a row on `queue` whose message was sent and that has not
    moved since is lost: `silent_since` (its own bound), or earlier while older messages
    still wait ahead of it in the queue."""
    head = waiting.get(queue)
    if head is None:
        return silent_since
    head_at = datetime.fromtimestamp(head, tz=UTC) - SKEW
    return min(silent_since, head_at)
