"""The per-user POST throttle, counted atomically in the real Redis."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django_redis.cache import RedisCache
from rest_framework.authtoken.models import Token

from core.throttles import sliding_window_hit
from tests.factories import MembershipFactory, UserFactory, WorkspaceFactory


@pytest.fixture
def redis_cache(redis_server) -> RedisCache:
    cache = RedisCache(redis_server.url, {"KEY_PREFIX": "throttle-test"})
    cache.clear()
    return cache


def test_concurrent_hits_never_take_more_than_the_limit(redis_cache):
    def hit(_: int) -> float | None:
        return sliding_window_hit(redis_cache, "user-1", now=1000.0, window=60.0, limit=10)

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(hit, range(60)))
    assert results.count(None) == 10
    assert all(wait == pytest.approx(60.0) for wait in results if wait is not None)


def test_a_slot_frees_when_the_oldest_hit_leaves_the_window(redis_cache):
    def hit(now: float) -> float | None:
        return sliding_window_hit(redis_cache, "user-2", now=now, window=10.0, limit=2)

    assert hit(100.0) is None
    assert hit(104.0) is None
    assert hit(105.0) == pytest.approx(5.0)  # refused: 100.0 leaves the window at 110.0
    assert hit(110.5) is None  # 100.0 has left; 104.0 and 110.5 now fill it
    assert hit(113.0) == pytest.approx(1.0)
    # Another key has its own window.
    assert sliding_window_hit(redis_cache, "user-3", now=113.0, window=10.0, limit=2) is None


def test_an_unreachable_redis_does_not_refuse_requests(redis_server):
    from tests.integration.services import free_port

    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", {})
    assert sliding_window_hit(cache, "k", now=1.0, window=1.0, limit=1) is None


def test_daphne_answers_429_with_retry_after_past_the_rate(make_daphne_server):
    alice, bob = UserFactory(username="t-alice"), UserFactory(username="t-bob")
    workspace = WorkspaceFactory()
    for user in (alice, bob):
        MembershipFactory(workspace=workspace, user=user)
    server = make_daphne_server(env={"WORKBENCH_TAB_CREATE_RATE": "3/min"})

    def headers(user) -> dict[str, str]:
        return {"Authorization": f"Token {Token.objects.create(user=user).key}"}

    alice_h, bob_h = headers(alice), headers(bob)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        task = http.post(
            f"/api/workspaces/{workspace.pk}/tasks/", json={"title": "t"}, headers=alice_h
        ).json()
        url = f"/api/tasks/{task['id']}/tabs/"
        answers = [http.post(url, json={}, headers=alice_h) for _ in range(4)]
        assert [a.status_code for a in answers] == [201, 201, 201, 429]
        refused = answers[-1]
        assert refused.json()["error"]["code"] == "throttled"
        assert 0 < int(refused.headers["Retry-After"]) <= 60
        assert http.get(url, headers=alice_h).status_code == 200  # reads are not throttled
        assert http.post(url, json={}, headers=bob_h).status_code == 201  # per user
