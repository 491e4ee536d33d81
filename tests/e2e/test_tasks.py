"""Issue 17: creating a task the way people start work (an agent, a first prompt), in real
headless Chromium against the real service."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.e2e.helpers import get_tab, screenshot


def test_a_task_created_with_a_prompt_opens_its_first_tab_with_the_prompt_waiting(team, open_page):
    api = team.api()
    agents = [agent["name"] for agent in api.get("/api/agents/").json()]
    wb = open_page(team.owner)
    form = wb.page.locator("#task-form")

    # The agents the API offers; the mock one says what it is.
    agent = form.get_by_label("Agent", exact=True)
    expect(agent.locator("option")).to_have_count(len(agents))
    expect(agent).to_have_value("mock")
    expect(form.locator("#task-agent-note")).to_contain_text("echoes what you send it")

    form.get_by_label("New task").fill("Write the changelog")
    form.get_by_label("What should the agent work on?").fill("List what changed this week")
    form.get_by_role("button", name="Create", exact=True).click()

    # The first tab is open and shown at once, the prompt waiting in it for the agent.
    expect(wb.task_heading).to_have_text("Write the changelog")
    expect(wb.tabs()).to_have_count(1)
    tab_id = wb.active_tab.get_attribute("data-tab-id") or ""
    expect(wb.tab(tab_id)).to_have_attribute("data-state", "pending_provision")
    prompt = wb.transcript.locator(".message-user")
    expect(prompt).to_contain_text("List what changed this week")
    expect(prompt.locator(".message-state")).to_have_text("Waiting for the agent…")
    expect(wb.composer).to_be_focused()
    expect(form.get_by_label("What should the agent work on?")).to_have_value("")
    screenshot(wb.page, "task-with-prompt")

    wb.expect_state(tab_id, "ready")
    reply = wb.transcript.locator(".message-agent")
    expect(reply).to_have_attribute("data-state", "complete", timeout=30_000)
    expect(reply).to_contain_text("List what changed this week")  # the mock agent echoes
    expect(prompt).to_have_attribute("data-state", "complete")
    tab = get_tab(api, tab_id)
    task = api.get(f"/api/tasks/{tab['task']}/").json()
    assert (task["title"], task["agent"], tab["agent"]) == ("Write the changelog", "mock", "mock")
