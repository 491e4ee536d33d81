"""Issue 17: opening tabs quickly, sending before a tab is ready, and a tab's own controls,
in real headless Chromium against the real service."""

from __future__ import annotations

import httpx
from playwright.sync_api import Route, expect

from tests.e2e.helpers import create_task, screenshot
from tests.helpers import wait_until


def open_tabs(api: httpx.Client, task_id: int) -> list[dict]:
    """The task's open tabs, as the REST API lists them."""
    response = api.get(f"/api/tasks/{task_id}/tabs/")
    assert response.status_code == 200, response.text
    return [tab for tab in response.json() if tab["state"] != "closed"]


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
