"""Creating a task with a prompt: the task, its first tab and the prompt queued there, in one
request and all or nothing. Owner, member and outsider, as every endpoint file."""

from __future__ import annotations

import pytest

from core.models import Membership
from tasks_app.models import Task
from workbench.models import Message, TabState, WorkbenchTab

pytestmark = pytest.mark.django_db


def start(client, workspace, **body):
    return client.post(f"/api/workspaces/{workspace.pk}/tasks/", body, format="json")


@pytest.mark.parametrize("who", ["alice", "bob"])  # the owner and a member
def test_a_prompt_opens_the_first_tab_and_waits_there_for_it(
    client_for, workspace, dispatched, django_capture_on_commit_callbacks, request, who
):
    user = request.getfixturevalue(who)
    with django_capture_on_commit_callbacks(execute=True):
        answer = start(client_for(user), workspace, title="fix it", prompt="Fix the bug")
    assert answer.status_code == 201, answer.json()
    body = answer.json()
    assert body["title"] == "fix it"
    tab, message = body["first_tab"], body["first_message"]
    assert (tab["state"], tab["task"]) == (TabState.PENDING_PROVISION, body["id"])
    assert (message["tab"], message["state"], message["text"]) == (
        tab["id"],
        "queued",
        "Fix the bug",
    )
    assert dispatched.runs.call_count == 1  # the task's one provisioning run
    assert Message.objects.get().author.username == user.username


def test_without_a_prompt_only_the_task_is_made(client_for, workspace, alice, dispatched):
    answer = start(client_for(alice), workspace, title="later")
    assert answer.status_code == 201
    assert (answer.json()["first_tab"], answer.json()["first_message"]) == (None, None)
    assert not WorkbenchTab.objects.exists()
    dispatched.assert_not_called()


def test_a_tab_the_member_may_not_open_leaves_no_task_behind(
    client_for, workspace, alice, dispatched, settings
):
    settings.WORKBENCH_MAX_OPEN_TABS_PER_USER = 0
    answer = start(client_for(alice), workspace, title="too many", prompt="go")
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "too_many_tabs_for_user"
    assert not Task.objects.exists()
    assert not Message.objects.exists()


@pytest.mark.parametrize("prompt", ["", "   ", "x" * 32_001, 7])
def test_a_bad_prompt_is_a_400_and_makes_nothing(client_for, workspace, alice, prompt):
    answer = start(client_for(alice), workspace, title="bad", prompt=prompt)
    assert answer.status_code == 400
    assert "prompt" in answer.json()["error"]["fields"]
    assert not Task.objects.exists()


def test_an_outsider_gets_a_404_and_makes_nothing(client_for, workspace, charlie):
    assert not Membership.objects.filter(user=charlie, workspace=workspace).exists()
    answer = start(client_for(charlie), workspace, title="mine now", prompt="go")
    assert answer.status_code == 404
    assert not Task.objects.exists()
