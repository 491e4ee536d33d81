"""The integration harness itself: real Redis and a real Celery worker answer."""

from __future__ import annotations

from config.celery import app
from tests.integration.services import CeleryWorker, RedisServer


def test_it_runs_a_private_redis(redis_server: RedisServer) -> None:
    with redis_server.client() as client:
        assert client.ping() is True


def test_it_points_this_process_at_the_test_redis(redis_server: RedisServer) -> None:
    assert app.conf.broker_url == redis_server.url


def test_the_worker_answers_a_control_ping(celery_worker: CeleryWorker) -> None:
    replies = app.control.ping(destination=[celery_worker.nodename], timeout=10)

    assert replies == [{celery_worker.nodename: {"ok": "pong"}}]
