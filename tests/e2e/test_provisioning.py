"""Issue 17: provisioning shown step by step, and a failed tab that says why and can be
fixed, in real headless Chromium against the real service (its worker provisions 2 s slower:
the `simulated_delay` step)."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import expect

from tests.e2e.helpers import get_tab, make_repository, screenshot

PLANNED = ["simulated delay", "prepare workspace", "start server", "wait healthy", "install agent"]


def test_a_pending_tab_lists_every_planned_step_with_a_live_timer_and_each_steps_log(
    team, open_page, e2e_worker
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
    # The worker held in that step, the page is looked at without racing the 2 s it lasts
    # (the timer is the page's own, it goes on).
    with e2e_worker.paused():
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


def test_a_failed_tab_says_why_in_plain_words_and_is_fixed_by_editing_its_repository(
    team, open_page, tmp_path: Path
):
    api = team.api()
    missing = tmp_path / "missing-repo"
    wb = open_page(team.owner)
    wb.create_task("Fix the repository", repository=str(missing), branch="main")
    tab_id = wb.open_tab()
    wb.expect_state(tab_id, "error")

    # One plain summary with the sandbox's own cause, the attempt and when it failed.
    expect(wb.status.locator(".status-title")).to_have_text("✕The repository could not be cloned")
    expect(wb.status.locator(".failure-when")).to_have_text(
        re.compile(r"^Attempt 1 · failed at \d{1,2}:\d{2}:\d{2}")
    )
    # The raw text behind Details, and said once on the whole page (not in the header too).
    details = wb.status.locator("#error-details")
    expect(details).to_be_hidden()
    wb.status.get_by_role("button", name="Details").click()
    expect(details).to_be_visible()
    expect(details).to_contain_text("does not exist")
    shown = wb.page.evaluate("document.body.innerText.split('does not exist').length - 1")
    assert shown == 1, shown
    failed = wb.steps.locator('li[data-name="prepare_workspace"]')
    expect(failed).to_have_attribute("data-status", "failed")
    expect(failed.locator(".step-log")).to_be_visible()  # a failed step's log is unfolded
    expect(wb.steps.locator('li[data-name="install_agent"]')).to_have_attribute(
        "data-status", "not_run"
    )
    screenshot(wb.page, "error-plain")

    # The fix: another repository, saved on the task, and the tab retried from the form.
    real = tmp_path / "real-repo"
    make_repository(real, "main")
    wb.status.get_by_role("button", name="Edit repository & retry").click()
    form = wb.page.locator("#repo-form")
    repository = form.get_by_label("Git URL or local path")
    expect(repository).to_be_focused()
    expect(repository).to_have_value(str(missing))
    expect(form.get_by_label("Branch")).to_have_value("main")
    repository.fill(str(real))
    screenshot(wb.page, "error-edit-repository")
    form.get_by_role("button", name="Save and retry").click()
    expect(form).to_be_hidden()
    expect(wb.task_meta).to_contain_text(f"{real} @ main")
    # The new attempt's plan knows how long the step that succeeded before took.
    expect(wb.steps.locator('li[data-name="simulated_delay"] .step-usual')).to_have_text(
        " · usually ~2 s"
    )
    wb.expect_state(tab_id, "ready")
    expect(wb.page.locator("#provisioning-summary")).to_contain_text("· attempt 2")
    tab = get_tab(api, tab_id)
    assert (tab["attempt"], tab["error_code"]) == (2, "")
    task = api.get(f"/api/tasks/{tab['task']}/").json()
    assert (task["repository"], task["branch"]) == (str(real), "main")
