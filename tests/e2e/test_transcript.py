"""Issue 17: a transcript people can read (markdown, rendered safely; times; who answered,
and that the mock agent only echoes), in real headless Chromium against the real service."""

from __future__ import annotations

import re

from playwright.sync_api import Dialog, expect

from tests.e2e.helpers import create_task, screenshot, wait_for_tab
from tests.helpers import open_tab


def test_replies_are_markdown_rendered_safely_with_their_time_and_the_agents_name(team, open_page):
    api = team.api()
    task = create_task(api, team.workspace_id, "Read the replies")
    tab = open_tab(api, task["id"])
    wait_for_tab(api, tab["id"], "ready")
    wb = open_page(team.owner)
    dialogs: list[str] = []

    def dismiss(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    wb.page.on("dialog", dismiss)
    wb.select_task("Read the replies")

    wb.composer.fill("**bold** and `code`")
    wb.send_button.click()
    reply = wb.transcript.locator(".message-agent")
    expect(reply).to_have_attribute("data-state", "complete", timeout=30_000)
    expect(reply.locator(".message-text strong")).to_have_text("bold")
    expect(reply.locator(".message-text code")).to_have_text("code")
    expect(reply.locator(".message-text")).not_to_contain_text("jsonrpc")  # the echo, unwrapped
    expect(reply.locator(".message-author")).to_have_text("mock")
    expect(reply.locator(".mock-badge")).to_have_attribute("title", re.compile("echoes"))
    expect(reply.locator(".message-time")).to_have_text(re.compile(r"^\d{1,2}:\d{2}"))
    prompt = wb.transcript.locator(".message-user")
    expect(prompt.locator(".message-text")).to_have_text("**bold** and `code`")  # as typed
    expect(prompt.locator(".message-time")).to_have_text(re.compile(r"^\d{1,2}:\d{2}"))

    # HTML in a prompt, echoed back, is text: no element, no script run.
    wb.composer.fill("<img src=x onerror=alert(1)> and <script>alert(2)</script>")
    wb.send_button.click()
    expect(reply).to_have_count(2)
    expect(reply.nth(1)).to_have_attribute("data-state", "complete", timeout=30_000)
    expect(reply.nth(1).locator(".message-text")).to_contain_text("<img src=x onerror=alert(1)>")
    expect(wb.transcript.locator("img, script")).to_have_count(0)
    screenshot(wb.page, "markdown")
    assert dialogs == []
