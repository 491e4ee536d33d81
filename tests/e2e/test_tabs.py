"""Issue 17: opening tabs quickly, sending before a tab is ready, and a tab's own controls,
in real headless Chromium against the real service."""

from __future__ import annotations

import os
import re
import signal
import time
from datetime import datetime
from pathlib import Path

import httpx
from playwright.sync_api import Route, expect

from tests.e2e.helpers import create_task, get_tab, make_repository, screenshot, wait_for_tab
from tests.helpers import open_tab, wait_until


def open_tabs(api: httpx.Client, task_id: int) -> list[dict]:
    """The task's open tabs, as the REST API lists them."""
    response = api.get(f"/api/tasks/{task_id}/tabs/")
    assert response.status_code == 200, response.text
    return [tab for tab in response.json() if tab["state"] != "closed"]


def transcript(api: httpx.Client, tab_id: str) -> list[dict]:
    response = api.get(f"/api/tabs/{tab_id}/messages/")
    assert response.status_code == 200, response.text
    return response.json()["results"]


def test_three_clicks_80_ms_apart_open_three_tabs_and_focus_the_last_ones_composer(team, open_page):
    api = team.api()
    task = create_task(api, team.workspace_id, "Open tabs quickly")
    wb = open_page(team.owner)
    wb.select_task("Open tabs quickly")
    page = wb.page

    # Clicked where the button is, as a person does (Playwright's own click would wait for a
    # disabled button to come back and follow it when it moves: what people cannot do).
    box = wb.new_tab_button.bounding_box()
    assert box
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    for click in range(3):
        if click:
            page.wait_for_timeout(80)  # the user's pace, not a wait for anything to happen
        page.mouse.click(x, y)

    expect(wb.tabs()).to_have_count(3)
    expect(wb.new_tab_button).not_to_have_attribute("aria-busy", "true")  # all answered
    assert len(open_tabs(api, task["id"])) == 3
    expect(wb.tabs()).to_have_count(3)  # and no fourth came late
    # The last click's tab is shown, the focus in its composer; the button did not move.
    last = wb.tabs().nth(2).get_attribute("data-tab-id")
    expect(wb.active_tab).to_have_attribute("data-tab-id", last or "")
    expect(wb.composer).to_be_focused()
    assert wb.new_tab_button.bounding_box() == box
    expect(wb.new_tab_button).to_be_enabled()
    screenshot(page, "new-tabs")

    # The shortcut, from the composer: one more tab, one per press, the focus in its composer.
    wb.composer.fill("kept in the third tab")
    third = wb.active_tab.get_attribute("data-tab-id")
    page.keyboard.press("Alt+N")
    expect(wb.tabs()).to_have_count(4)
    expect(wb.active_tab).not_to_have_attribute("data-tab-id", third or "")
    expect(wb.composer).to_be_focused()
    expect(wb.composer).to_have_value("")
    wait_until(
        lambda: len(open_tabs(api, task["id"])) == 4,
        timeout=30,
        message="the shortcut's tab is not on the server",
    )
    assert wb.new_tab_button.bounding_box() == box
    expect(wb.new_tab_button).to_have_attribute("aria-keyshortcuts", "Alt+N")
    wb.select_tab(third or "")
    expect(wb.composer).to_have_value("kept in the third tab")


def test_a_new_tab_whose_answer_is_lost_is_retried_with_the_same_key_and_opens_once(
    team, open_page, console
):
    console.allow(r"status of 503")  # the browser reports the lost answer itself
    api = team.api()
    task = create_task(api, team.workspace_id, "Flaky network")
    wb = open_page(team.owner)
    wb.select_task("Flaky network")
    keys: list[str | None] = []

    def lose_the_first_answer(route: Route) -> None:
        if route.request.method != "POST":
            route.continue_()
            return
        keys.append(route.request.headers.get("idempotency-key"))
        if len(keys) == 1:
            route.fetch()  # the server makes the tab; its answer is lost on the way back
            route.fulfill(
                status=503,
                json={"error": {"code": "unavailable", "message": "gateway lost it", "fields": {}}},
            )
        else:
            route.continue_()

    wb.page.route("**/api/tasks/*/tabs/", lose_the_first_answer)
    wb.new_tab_button.click()
    expect(wb.tabs()).to_have_count(1)
    expect(wb.composer).to_be_focused()  # shown once the retry answered
    expect(wb.new_tab_button).not_to_have_attribute("aria-busy", "true")
    assert len(keys) == 2 and keys[0] and keys[0] == keys[1], keys
    assert len(open_tabs(api, task["id"])) == 1
    expect(wb.tabs()).to_have_count(1)
    expect(wb.page.locator("#notice")).to_be_hidden()


# -- send when ready -------------------------------------------------------------------------


def test_prompts_sent_to_a_pending_tab_are_answered_in_order_once_it_is_ready(team, open_page):
    api = team.api()
    wb = open_page(team.owner)
    wb.create_task("Ask before it is ready")
    tab_id = wb.open_tab()
    expect(wb.tab(tab_id)).to_have_attribute("data-state", "pending_provision")
    expect(wb.send_button).to_be_enabled()
    expect(wb.composer_reason).to_contain_text("Queued prompts are sent once the agent is ready")

    expect(wb.composer).to_be_focused()  # a new tab: type at once
    wb.page.keyboard.type("first question")
    wb.send_button.click()
    expect(wb.composer).to_have_value("")
    wb.composer.fill("second question")
    wb.composer.press("Control+Enter")
    expect(wb.composer).to_have_value("")
    prompts = wb.transcript.locator(".message-user")
    expect(prompts).to_have_count(2)

    # Answered, in order, once the tab is ready; no reload, no second click.
    wb.expect_state(tab_id, "ready")
    replies = wb.transcript.locator(".message-agent")
    expect(replies).to_have_count(2, timeout=30_000)
    for n, text in enumerate(("first question", "second question")):
        expect(replies.nth(n)).to_have_attribute("data-state", "complete", timeout=30_000)
        expect(replies.nth(n)).to_contain_text(text)  # the mock agent echoes
        expect(prompts.nth(n)).to_have_attribute("data-state", "complete")
    expect(prompts.first.locator(".message-state")).to_have_text("")

    # The server took both while the tab was still pending, and answered them in order.
    ready_at = datetime.fromisoformat(wait_for_tab(api, tab_id, "ready")["ready_at"])
    messages = transcript(api, tab_id)
    sent = [m for m in messages if m["role"] == "user"]
    assert [m["text"] for m in sent] == ["first question", "second question"]
    assert all(datetime.fromisoformat(m["created_at"]) < ready_at for m in sent), (ready_at, sent)
    replies_to = [m["reply_to"] for m in messages if m["role"] == "agent"]
    assert replies_to == [m["id"] for m in sent]
    assert get_draft(api, tab_id) == ""


def get_draft(api: httpx.Client, tab_id: str) -> str:
    return api.get(f"/api/tabs/{tab_id}/").json()["draft"]


def test_a_prompt_for_a_failed_tab_waits_is_never_lost_and_is_answered_after_retry(
    team, open_page, console, tmp_path: Path
):
    console.allow(r"net::ERR_FAILED")  # the browser reports the request cut below itself
    repository = tmp_path / "not-yet"
    wb = open_page(team.owner)
    wb.create_task("Ask a failed tab", repository=str(repository), branch="main")
    tab_id = wb.open_tab()
    wb.expect_state(tab_id, "error")
    expect(wb.send_button).to_be_enabled()
    expect(wb.composer_reason).to_contain_text("retry the tab")

    # The network fails: the text stays in the composer, with the reason; nothing is shown
    # as sent.
    def cut(route: Route) -> None:
        if route.request.method == "POST":
            route.abort()
        else:
            route.continue_()

    wb.page.route("**/api/tabs/*/messages/", cut)
    wb.composer.fill("are you there?")
    wb.send_button.click()
    expect(wb.page.locator("#composer-error")).to_contain_text(
        "Not sent: The server cannot be reached"
    )
    expect(wb.composer).to_have_value("are you there?")
    expect(wb.transcript.locator(".message-user")).to_have_count(0)
    wb.page.unroute("**/api/tabs/*/messages/")

    wb.send_button.click()
    expect(wb.composer).to_have_value("")
    expect(wb.page.locator("#composer-error")).to_be_hidden()
    prompt = wb.transcript.locator(".message-user")
    expect(prompt).to_have_attribute("data-state", "queued")
    expect(prompt.locator(".message-state")).to_have_text("Waiting for the agent…")
    expect(wb.composer_reason).to_contain_text("1 prompt is waiting")
    screenshot(wb.page, "queued")

    make_repository(repository, "main")
    wb.status.get_by_role("button", name="Retry", exact=True).click()
    wb.expect_state(tab_id, "ready")
    reply = wb.transcript.locator(".message-agent")
    expect(reply).to_have_attribute("data-state", "complete", timeout=30_000)
    expect(reply).to_contain_text("are you there?")
    expect(prompt).to_have_attribute("data-state", "complete")
    expect(wb.composer_reason).not_to_contain_text("waiting")


# -- a tab's own controls ------------------------------------------------------------------


def test_a_tab_is_renamed_by_double_clicking_its_title_enter_saves_escape_cancels(team, open_page):
    api = team.api()
    task = create_task(api, team.workspace_id, "Name my tabs")
    alice = open_page(team.owner)
    alice.select_task("Name my tabs")
    tab_id = alice.open_tab()
    bob = open_page(team.member)
    bob.select_task("Name my tabs")
    expect(bob.tab(tab_id)).to_be_visible()

    title = alice.tab(tab_id).locator(".tab-title")
    field = alice.tab(tab_id).locator(".tab-rename")
    title.dblclick()
    expect(field).to_be_focused()
    expect(field).to_have_value("mock 1")
    alice.page.keyboard.type("Parser work")  # the old title was selected: replaced
    screenshot(alice.page, "rename")
    alice.page.keyboard.press("Enter")
    expect(field).to_be_hidden()
    expect(title).to_have_text("Parser work")
    expect(alice.tab(tab_id).locator(".tab-select")).to_be_focused()
    wait_until(
        lambda: api.get(f"/api/tabs/{tab_id}/").json()["title"] == "Parser work",
        timeout=30,
        message="the new title never reached the server",
    )
    expect(bob.tab(tab_id).locator(".tab-title")).to_have_text("Parser work")  # live

    # Escape leaves the title as it was; F2 on the focused tab edits it too.
    alice.page.keyboard.press("F2")
    expect(field).to_be_focused()
    alice.page.keyboard.type("Never mind")
    alice.page.keyboard.press("Escape")
    expect(field).to_be_hidden()
    expect(title).to_have_text("Parser work")
    assert open_tabs(api, task["id"])[0]["title"] == "Parser work"
    expect(bob.tab(tab_id).locator(".tab-title")).to_have_text("Parser work")


def mock_agents_of(sandbox_root: Path, task_id: int) -> list[int]:
    """The mock agent processes of the task's sandbox: descendants of its confined server,
    whose command line names the sandbox's directory under this run's sandbox root."""
    needle = f"{sandbox_root}/t{task_id}-".encode()
    parents: dict[int, int] = {}
    cmdlines: dict[int, bytes] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdlines[int(entry.name)] = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    roots = {pid for pid, cmdline in cmdlines.items() if needle in cmdline}

    def in_sandbox(pid: int) -> bool:
        while pid > 1:
            if pid in roots:
                return True
            pid = parents.get(pid, 0)
        return False

    return [
        pid
        for pid, cmdline in cmdlines.items()
        if b"mock-agent-process" in cmdline and in_sandbox(pid)
    ]


def test_a_running_turn_shows_a_timer_on_its_tab_and_task_and_stop_asks_the_agent_to_stop(
    team, open_page, integration_run
):
    api = team.api()
    task = create_task(api, team.workspace_id, "A long turn")
    tab_id = open_tab(api, task["id"])["id"]
    wait_for_tab(api, tab_id, "ready")
    wb = open_page(team.owner)
    wb.select_task("A long turn")
    wb.select_tab(tab_id)
    turn = wb.page.locator("#turn")
    expect(turn).to_be_hidden()

    # The mock agent answers at once: it is paused (SIGSTOP) to make a turn that lasts.
    agents = wait_until(
        lambda: mock_agents_of(integration_run.sandbox_root, task["id"]),
        timeout=30,
        message="the tab's mock agent process was not found",
    )
    for pid in agents:
        os.kill(pid, signal.SIGSTOP)
    try:
        wb.composer.fill("take your time")
        wb.send_button.click()
        expect(turn).to_be_visible(timeout=30_000)
        expect(turn).to_contain_text("The agent is working")
        expect(turn.locator(".elapsed")).to_have_text(re.compile(r"^[1-9]\d* s$"))  # ticking
        expect(wb.tab(tab_id).locator(".tab-running .spinner")).to_be_visible()
        expect(wb.tab(tab_id).locator(".tab-select")).to_have_attribute(
            "aria-label", re.compile("agent working")
        )
        running = wb.task("A long turn").locator(".task-item-running")
        expect(running).to_be_visible()
        expect(running).to_contain_text(re.compile(r"running [1-9]\d* s"))
        screenshot(wb.page, "running")

        stop = turn.get_by_role("button", name="Stop")
        with wb.page.expect_response(
            lambda r: r.url.endswith(f"/api/tabs/{tab_id}/cancel/")
        ) as asked:
            stop.click()
        assert asked.value.status == 202, asked.value.text()
        expect(turn.get_by_role("button", name="Stopping…")).to_be_disabled()
    finally:
        for pid in agents:
            os.kill(pid, signal.SIGCONT)

    # The turn ends (the mock agent, woken, answers or stops): every indicator goes away.
    expect(turn).to_be_hidden(timeout=60_000)
    expect(wb.tab(tab_id).locator(".tab-running")).to_be_hidden()
    expect(wb.task("A long turn").locator(".task-item-running")).to_be_hidden()
    prompt = wb.transcript.locator(".message-user")
    expect(prompt).not_to_have_attribute("data-state", "sending")


def test_a_page_opened_during_a_turn_shows_it_running_from_its_real_start_until_stopped(
    team, open_page, integration_run
):
    """The snapshot carries tabs, not messages: the tab's `running_since` tells a page opened
    mid-turn that the turn runs, and since when. The running tab is not the one shown, so
    no transcript of it is loaded: only `running_since` can say so."""
    api = team.api()
    task = create_task(api, team.workspace_id, "A turn before the page")
    shown_id = open_tab(api, task["id"])["id"]  # the first tab: the one the task shows
    busy_id = open_tab(api, task["id"])["id"]
    wait_for_tab(api, shown_id, "ready")
    wait_for_tab(api, busy_id, "ready")
    agents = wait_until(
        lambda: mock_agents_of(integration_run.sandbox_root, task["id"]),
        timeout=30,
        message="the tab's mock agent process was not found",
    )
    for pid in agents:
        os.kill(pid, signal.SIGSTOP)  # the mock agent answers at once: paused, its turn lasts
    try:
        sent = api.post(f"/api/tabs/{busy_id}/messages/", json={"text": "take your time"})
        assert sent.status_code == 202, sent.text
        since = wait_until(
            lambda: get_tab(api, busy_id)["running_since"],
            timeout=30,
            message="the prompt never went out to the agent",
        )
        started = datetime.fromisoformat(since).timestamp()

        wb = open_page(team.owner)  # a page that loads while the turn runs
        wb.select_task("A turn before the page")
        expect(wb.active_tab).to_have_attribute("data-tab-id", shown_id)
        task_running = wb.task("A turn before the page").locator(".task-item-running")
        tab_running = wb.tab(busy_id).locator(".tab-running")
        expect(task_running).to_be_visible()
        expect(tab_running.locator(".spinner")).to_be_visible()
        expect(wb.tab(shown_id).locator(".tab-running")).to_be_hidden()
        for badge in (task_running, tab_running):
            # Counting from the turn's start on the server, not from when the page loaded.
            elapsed = badge.locator(".elapsed")
            expect(elapsed).to_have_attribute("data-since", since)
            shown = int(re.fullmatch(r"(\d+) s", elapsed.inner_text().strip()).group(1))
            assert abs(shown - (time.time() - started)) <= 2, (shown, since)
        screenshot(wb.page, "running-after-load")

        wb.select_tab(busy_id)
        turn = wb.page.locator("#turn")
        expect(turn).to_be_visible()
        with wb.page.expect_response(
            lambda r: r.url.endswith(f"/api/tabs/{busy_id}/cancel/")
        ) as asked:
            turn.get_by_role("button", name="Stop").click()
        assert asked.value.status == 202, asked.value.text()
    finally:
        for pid in agents:
            os.kill(pid, signal.SIGCONT)

    expect(turn).to_be_hidden(timeout=60_000)
    expect(tab_running).to_be_hidden()
    expect(task_running).to_be_hidden()
    assert get_tab(api, busy_id)["running_since"] is None
