"""Logs an operator can follow: each line carries the ids bound for its request or Celery
task, as text or JSON lines; a request answers its id, and the Celery messages it sends
carry it to the worker's lines. The real worker's lines: tests/integration/test_logs.py."""

from __future__ import annotations

import json
import logging
import threading

import pytest

from config import celery as celery_config
from core import logs
from core.models import Membership
from tasks_app import views
from tests.factories import MembershipFactory, TaskFactory

pytestmark = pytest.mark.django_db


def record(message: str = "hello") -> logging.LogRecord:
    entry = logging.LogRecord("workbench.test", logging.INFO, __file__, 1, message, (), None)
    logs.IdsFilter().filter(entry)
    return entry


def test_a_text_line_shows_the_bound_ids_in_a_fixed_order():
    with logs.scope(tab="t-1", request="r-1"):
        logs.bind(task=7, sandbox=None)
        line = logs.TextFormatter().format(record())
    assert line.endswith("workbench.test hello [request=r-1 task=7 tab=t-1]")
    assert logs.TextFormatter().format(record()).endswith("workbench.test hello")  # unbound


def test_a_json_line_is_one_object_with_the_ids():
    with logs.scope(celery_task="c-1", tab="t-1"):
        entry = json.loads(logs.JsonFormatter().format(record('quote " and\nnewline')))
    assert entry["message"] == 'quote " and\nnewline'
    assert (entry["celery_task"], entry["tab"], entry["level"]) == ("c-1", "t-1", "INFO")


def test_each_thread_sees_only_its_own_ids():
    seen: dict[str, dict[str, str]] = {}

    def work(name: str) -> None:
        with logs.scope(request=name):
            barrier.wait(timeout=5)
            seen[name] = logs.ids()

    barrier = threading.Barrier(2)
    threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    assert seen == {"a": {"request": "a"}, "b": {"request": "b"}}


@pytest.mark.parametrize(
    ("offered", "kept"),
    [("proxy-req-12345678", True), ("evil\nline", False), ("x" * 200, False), (None, False)],
)
def test_a_request_answers_its_id_keeping_only_a_plain_one_it_was_given(
    client_for, alice, offered, kept
):
    headers = {"HTTP_X_REQUEST_ID": offered} if offered else {}
    answer = client_for(alice).get("/api/workspaces/", **headers)
    assert answer.status_code == 200
    assert (answer["X-Request-ID"] == offered) is kept
    assert len(answer["X-Request-ID"]) >= 8


def test_a_views_lines_carry_the_request_and_the_objects_it_read(client_for, alice, monkeypatch):
    task = TaskFactory()
    MembershipFactory(workspace=task.workspace, user=alice, role=Membership.Role.OWNER)
    seen: list[dict[str, str]] = []
    original = views.TaskDetailView.get

    def get(self, request, task_id):
        response = original(self, request, task_id)
        seen.append(logs.ids())  # what a line logged by the view would carry
        return response

    monkeypatch.setattr(views.TaskDetailView, "get", get)
    answer = client_for(alice).get(f"/api/tasks/{task.pk}/", HTTP_X_REQUEST_ID="req-abcdefgh")
    assert answer.status_code == 200
    assert seen == [
        {"request": "req-abcdefgh", "workspace": str(task.workspace_id), "task": str(task.pk)}
    ]
    assert logs.ids() == {}  # nothing leaks past the request


def test_a_message_carries_its_senders_request_id_to_the_worker():
    headers: dict[str, object] = {}
    with logs.scope(request="req-12345678"):
        celery_config._stamp_sent_at(headers=headers)
    assert headers[celery_config.REQUEST_HEADER] == "req-12345678"

    class Request:
        workbench_request = "req-12345678"

    class Task:
        request = Request()

    celery_config._bind_log_ids(task_id="celery-1", task=Task())
    assert logs.ids() == {"celery_task": "celery-1", "request": "req-12345678"}
    celery_config._unbind_log_ids()
    assert logs.ids() == {}


def test_a_request_id_with_a_trailing_newline_is_replaced():
    assert logs.request_id("abcdefgh\n") != "abcdefgh\n"
    assert logs.request_id("abcdefgh") == "abcdefgh"


def test_binding_none_unbinds_an_id_an_earlier_row_bound():
    with logs.scope(sandbox=3, tab="a"):
        logs.bind(tab="b", sandbox=None)
        assert logs.ids() == {"tab": "b"}
