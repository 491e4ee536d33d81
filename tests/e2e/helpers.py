"""The workbench page as the browser tests see it: what a person looks at and clicks."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
from playwright.sync_api import Locator, Page, expect

from tests.helpers import wait_until
from tests.integration.services import REPO_ROOT

SCREENSHOTS = REPO_ROOT / "artifacts" / "screenshots"
READY_TIMEOUT_MS = 60_000


def log_in(page: Page, username: str, password: str) -> None:
    """Through the real login form; the page then connects its websocket."""
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#connection")).to_have_text("Connected")


def screenshot(page: Page, name: str, *, full_page: bool = False) -> Path:
    """Save an artifact under artifacts/screenshots/ (the README shows one of them)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=path, full_page=full_page, animations="disabled", caret="initial")
    return path


class WorkbenchPage:
    """Locators and actions of the workbench shell (workbench/templates/workbench/shell.html)."""

    def __init__(self, page: Page):
        self.page = page
        self.connection = page.locator("#connection")
        self.task_heading = page.locator("#task-heading")
        self.task_meta = page.locator("#task-meta")
        self.steps = page.locator("#task-steps")
        self.tab_strip = page.locator("#tab-strip")
        self.new_tab_button = page.get_by_role("button", name="+ New tab")
        self.status = page.locator("#tab-status")
        self.transcript = page.locator("#transcript")
        self.composer = page.get_by_label("Message", exact=True)
        self.send_button = page.get_by_role("button", name="Send", exact=True)
        self.composer_reason = page.locator("#composer-reason")
        self.workspace_select = page.get_by_label("Workspace", exact=True)
        self.model = page.get_by_label("Model", exact=True)  # a select, or free text
        self.model_note = page.locator("#model-note")
        self.members_button = page.get_by_role("button", name="Members", exact=True)
        self.members = page.get_by_role("dialog")
        self.members_error = page.locator("#members-error")
        self.members_status = page.locator("#members-status")

    # -- tasks ---------------------------------------------------------------------------
    def task(self, title: str) -> Locator:
        return self.page.locator("#task-list .task-item", has_text=title)

    def create_task(self, title: str, *, repository: str = "", branch: str = "") -> None:
        form = self.page.locator("#task-form")
        form.get_by_label("New task").fill(title)
        if repository or branch:
            form.get_by_text("Repository (optional)").click()
            form.get_by_label("Git URL or local path").fill(repository)
            form.get_by_label("Branch").fill(branch)
        form.get_by_role("button", name="Create", exact=True).click()
        expect(self.task_heading).to_have_text(title)

    def select_task(self, title: str) -> None:
        self.task(title).click()
        expect(self.task_heading).to_have_text(title)

    # -- tabs ----------------------------------------------------------------------------
    def tabs(self) -> Locator:
        return self.tab_strip.locator("li.tab")

    def tab(self, tab_id: str) -> Locator:
        return self.tab_strip.locator(f'li[data-tab-id="{tab_id}"]')

    @property
    def active_tab(self) -> Locator:
        return self.tab_strip.locator('li[data-active="true"]')

    def open_tab(self) -> str:
        """Click "+ New tab"; the new tab shows at once, active. Returns its id."""
        before = [li.get_attribute("data-tab-id") for li in self.tabs().all()]
        self.new_tab_button.click()
        # The websocket event may draw the tab before the POST answers and makes it active.
        handle = self.page.wait_for_function(
            """before => {
                const active = document.querySelector('#tab-strip li[data-active="true"]');
                return active && !before.includes(active.dataset.tabId) && active.dataset.tabId;
            }""",
            arg=before,
        )
        expect(self.tabs()).to_have_count(len(before) + 1)
        return str(handle.json_value())

    def select_tab(self, tab_id: str) -> None:
        self.tab(tab_id).locator(".tab-select").click()
        expect(self.tab(tab_id)).to_have_attribute("data-active", "true")

    def close_tab(self, tab_id: str) -> None:
        self.tab(tab_id).get_by_role("button", name=re.compile(r"^Close ")).click()
        expect(self.tab(tab_id)).to_have_count(0)

    def expect_state(self, tab_id: str, state: str, timeout: float = READY_TIMEOUT_MS) -> None:
        expect(self.tab(tab_id)).to_have_attribute("data-state", state, timeout=timeout)

    def unread_dot(self, tab_id: str) -> Locator:
        return self.tab(tab_id).locator(".unread-dot")

    # -- members -------------------------------------------------------------------------
    def open_members(self) -> None:
        self.members_button.click()
        expect(self.members).to_be_visible()

    def member_row(self, username: str) -> Locator:
        return self.members.locator("#member-list li").filter(
            has=self.page.locator(".member-username", has_text=re.compile(f"^{username}$"))
        )

    # -- the page itself -----------------------------------------------------------------
    def mark_document(self) -> None:
        """Tag this document; `still_same_document` then proves no reload happened."""
        self.page.evaluate("window.__e2eMarker = 'no reload'")

    def still_same_document(self) -> bool:
        return self.page.evaluate("window.__e2eMarker") == "no reload"


# -- REST helpers ----------------------------------------------------------------------------


def create_task(api: httpx.Client, workspace_id: int, title: str, **fields: str) -> dict:
    response = api.post(f"/api/workspaces/{workspace_id}/tasks/", json={"title": title, **fields})
    assert response.status_code == 201, response.text
    return response.json()


def get_tab(api: httpx.Client, tab_id: str) -> dict:
    response = api.get(f"/api/tabs/{tab_id}/")
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_tab(api: httpx.Client, tab_id: str, state: str, timeout: float = 60.0) -> dict:
    last: dict = {}

    def reached() -> dict | None:
        nonlocal last
        last = get_tab(api, tab_id)
        return last if last["state"] == state else None

    return wait_until(reached, timeout=timeout, message=lambda: f"tab never {state}: {last}")


def make_repository(path: Path, branch: str) -> None:
    """A git repository with one empty commit on `branch`."""
    subprocess.run(["git", "init", "-q", "-b", branch, str(path)], check=True)
    subprocess.run(
        [
            "git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t",
            "commit", "-q", "--allow-empty", "-m", "init",
        ],
        check=True,
    )  # fmt: skip
