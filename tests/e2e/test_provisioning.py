"""Issue 17: provisioning shown step by step, and a failed tab that says why and can be
fixed, in real headless Chromium against the real service (its worker provisions 2 s slower:
the `simulated_delay` step)."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.helpers import screenshot

PLANNED = ["simulated delay", "prepare workspace", "start server", "wait healthy", "install agent"]


def test_a_pending_tab_lists_every_planned_step_with_a_live_timer_and_each_steps_log(
    team, open_page
):
    wb = open_page(team.owner)
    wb.create_task("Watch it provision")
    box = wb.new_tab_button.bounding_box()
    tab_id = wb.open_tab()

    # Every step of the run, the ones to come included, in order.
    steps = wb.steps.locator("li.step")
    expect(steps.locator(".step-name")).to_have_text(PLANNED)
    running = wb.steps.locator('li[data-status="running"]')
    expect(running).to_have_attribute("data-name", "simulated_delay")
    expect(running.locator(".step-timer")).to_have_text(re.compile(r"^[1-9]\d* s$"))
    expect(wb.steps.locator('li[data-name="install_agent"]')).to_have_attribute(
        "data-status", "upcoming"
    )
    expect(wb.status.locator(".status-detail")).to_contain_text("Step 1 of 5: simulated delay")
    # The steps are in the pane: however many there are, the tab bar stays where it was.
    assert wb.new_tab_button.bounding_box() == box
    screenshot(wb.page, "provisioning-steps")

    prepare = wb.steps.locator('li[data-name="prepare_workspace"]')
    expect(prepare).to_have_attribute("data-status", "succeeded", timeout=60_000)
    expect(prepare.locator(".step-time")).to_have_text(re.compile(r"^\d+(\.\d)? m?s$"))

    # Once ready the steps fold into one line; each step's log is kept and can be read.
    wb.expect_state(tab_id, "ready")
    summary = wb.page.locator("#provisioning-summary")
    expect(summary).to_contain_text(re.compile(r"Environment ready in .* \(5 steps\)"))
    expect(prepare).to_be_hidden()
    summary.click()
    expect(steps.locator(".step-time").first).to_have_text(re.compile(r"^\d\.\d s$"))
    log = prepare.locator(".step-log")
    expect(log).to_be_hidden()  # folded unless the step failed
    prepare.get_by_role("button", name="Show the log of prepare workspace").click()
    expect(log).to_be_visible()
    expect(log).to_contain_text("No repository: an empty git repository on main")
    expect(steps.filter(has_text="install agent")).to_have_attribute("data-status", "succeeded")
    assert wb.new_tab_button.bounding_box() == box
    screenshot(wb.page, "provisioning-log")
    prepare.get_by_role("button", name="Hide the log of prepare workspace").click()
    expect(log).to_be_hidden()
