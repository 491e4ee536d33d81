"""Issue 17: a narrow (390 px) window and the keyboard, in real headless Chromium against the
real service."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.e2e.helpers import create_task, screenshot


def test_a_narrow_window_keeps_the_composer_on_screen_and_the_tasks_in_a_drawer(team, open_page):
    api = team.api()
    create_task(api, team.workspace_id, "Small screen work")
    create_task(api, team.workspace_id, "The newest task")
    wb = open_page(team.owner, width=390, height=800)
    page = wb.page
    drawer = page.locator("#sidebar")
    toggle = page.get_by_role("button", name="Tasks", exact=True)

    # The task list is a drawer: closed, opened by its button, closed by picking a task.
    expect(drawer).to_be_hidden()
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    expect(drawer).to_be_visible()
    expect(drawer).to_be_in_viewport(ratio=0.9)
    screenshot(page, "narrow-drawer")
    wb.task("Small screen work").click()
    expect(wb.task_heading).to_have_text("Small screen work")
    expect(drawer).to_be_hidden()
    expect(toggle).to_have_attribute("aria-expanded", "false")

    # A pending tab, its steps listed: the composer is on screen all the same.
    first = wb.open_tab()
    expect(wb.tab(first)).to_have_attribute("data-state", "pending_provision")
    expect(wb.steps.locator("li.step").first).to_be_visible()
    expect(wb.composer).to_be_in_viewport(ratio=1)
    expect(wb.send_button).to_be_in_viewport(ratio=1)
    screenshot(page, "narrow-pending")

    # Left and Right move between the tabs (only the shown one is in the Tab order).
    second = wb.open_tab()
    wb.tab(second).locator(".tab-select").focus()
    page.keyboard.press("ArrowLeft")
    expect(wb.active_tab).to_have_attribute("data-tab-id", first)
    expect(wb.tab(first).locator(".tab-select")).to_be_focused()
    expect(wb.tab(second).locator(".tab-select")).to_have_attribute("tabindex", "-1")
    page.keyboard.press("ArrowRight")
    expect(wb.active_tab).to_have_attribute("data-tab-id", second)
    expect(wb.tab(second).locator(".tab-select")).to_be_focused()

    # Ready, with a transcript longer than the window: the composer is still on screen.
    wb.expect_state(second, "ready")
    for n in range(4):
        wb.composer.fill(f"message {n}: " + "a long line of text " * 8)
        wb.send_button.click()
        expect(wb.composer).to_have_value("")
    replies = wb.transcript.locator(".message-agent")
    expect(replies).to_have_count(4, timeout=30_000)
    expect(replies.nth(3)).to_have_attribute("data-state", "complete", timeout=30_000)
    expect(wb.composer).to_be_in_viewport(ratio=1)
    expect(wb.send_button).to_be_in_viewport(ratio=1)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, "narrow-ready")
