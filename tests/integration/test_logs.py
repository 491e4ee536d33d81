"""Following one tab through the logs on the real processes: a worker writing JSON lines
tags every line of the tab's provisioning run, session step and prompt with the task,
sandbox, tab and Celery task ids, and with the id of the request that started it."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.helpers import wait_until


@pytest.fixture
def json_worker(celery_worker, make_celery_worker):
    """Swap the session's worker for one that logs JSON lines."""
    celery_worker.stop()
    try:
        yield make_celery_worker(env={"WORKBENCH_LOG_FORMAT": "json"})
    finally:
        celery_worker.start()


def lines(worker) -> list[dict]:
    found = []
    for line in worker.read_log().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # Celery's banner, printed before logging starts
        if isinstance(entry, dict):
            found.append(entry)
    return found


def test_one_grep_for_a_tab_finds_its_life_with_every_id(member, json_worker):
    headers = {"Authorization": f"Token {member['token']}", "X-Request-ID": "itest-open-0001"}
    with httpx.Client(base_url=member["http"], timeout=30, headers=headers) as api:
        task = api.post(f"/api/workspaces/{member['workspace']}/tasks/", json={"title": "logs"})
        opened = api.post(f"/api/tasks/{task.json()['id']}/tabs/", json={})
        assert opened.headers["X-Request-ID"] == "itest-open-0001"
        tab = opened.json()
        wait_until(
            lambda: api.get(f"/api/tabs/{tab['id']}/").json()["state"] == "ready",
            timeout=60,
            message="the tab never became ready",
        )
        sent = api.post(
            f"/api/tabs/{tab['id']}/messages/",
            json={"text": "hello"},
            headers={"X-Request-ID": "itest-send-0002"},
        )
        assert sent.status_code == 202

        def prompt_logged() -> list[dict] | None:
            mine = [e for e in lines(json_worker) if e.get("tab") == tab["id"]]
            prompts = [e for e in mine if e["message"].startswith("provider prompt")]
            return mine if prompts else None

        mine = wait_until(prompt_logged, timeout=60, message="no prompt line for the tab")
        sandbox = str(api.get(f"/api/tabs/{tab['id']}/").json()["sandbox"])
    # Every line of the prompt's turn, its helper thread's too, says whose it is.
    turn = [e for e in lines(json_worker) if "/v1/acp/" in e["message"]]
    assert turn and all(e.get("tab") == tab["id"] for e in turn), turn
    for entry in mine:
        assert entry["task"] == str(task.json()["id"]), entry
        assert entry["sandbox"] == sandbox, entry
        assert entry["workspace"] == str(member["workspace"]), entry
        assert entry["celery_task"], entry
    messages = [e["message"] for e in mine]
    assert any(m.startswith("provider session open") for m in messages), messages
    session = next(e for e in mine if e["message"].startswith("provider session open"))
    prompt = next(e for e in mine if e["message"].startswith("provider prompt"))
    assert session["request"] == "itest-open-0001"  # the tab POST's id reached its step
    assert prompt["request"] == "itest-send-0002"
    # The task's provisioning run, found by its task id, carries the same request id.
    run = [
        e
        for e in lines(json_worker)
        if e.get("task") == str(task.json()["id"]) and "provisioning step" in e["message"]
    ]
    assert {e["sandbox"] for e in run} == {sandbox}
    assert {e["request"] for e in run} == {"itest-open-0001"}
    assert any("prepare_workspace succeeded" in e["message"] for e in run), run
