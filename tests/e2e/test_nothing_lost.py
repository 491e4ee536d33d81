"""Issue 17: nothing the user typed is lost. Closing a tab that holds a draft or queued
prompts asks in the page; archiving a task waits behind an Undo; a task archived elsewhere
shows a notice that keeps its drafts to copy. Real headless Chromium, real service."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from playwright.sync_api import Request, Route, expect

from tests.e2e.helpers import create_task, get_tab, screenshot
from tests.helpers import open_tab, wait_until


def get_task(api: httpx.Client, task_id: int) -> dict:
    response = api.get(f"/api/tasks/{task_id}/")
    assert response.status_code == 200, response.text
    return response.json()


def test_closing_a_tab_with_a_draft_asks_in_the_page_and_keep_keeps_it(team, open_page):
    api = team.api()
    create_task(api, team.workspace_id, "Close with care")
    wb = open_page(team.owner)
    wb.select_task("Close with care")
    page = wb.page
    dialog = page.get_by_role("dialog")

    empty = wb.open_tab()
    drafted = wb.open_tab()
    wb.composer.fill("a half-written idea\nwith a second line")

    # Its close button asks first, in the page; "Keep tab" has the focus, and Escape keeps the tab.
    wb.tab(drafted).get_by_role("button", name=re.compile(r"^Close ")).click()
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Close “")
    expect(dialog).to_contain_text("its draft is discarded")
    expect(dialog.locator("#close-draft")).to_have_text("a half-written idea\nwith a second line")
    expect(dialog.get_by_role("button", name="Keep tab")).to_be_focused()
    screenshot(page, "close-draft-confirm")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(wb.tab(drafted)).to_have_count(1)
    expect(wb.composer).to_have_value("a half-written idea\nwith a second line")
    assert get_tab(api, drafted)["state"] != "closed"

    # "Keep tab" by click keeps it too.
    wb.tab(drafted).get_by_role("button", name=re.compile(r"^Close ")).click()
    dialog.get_by_role("button", name="Keep tab").click()
    expect(dialog).to_be_hidden()
    expect(wb.tab(drafted)).to_have_count(1)

    # A tab with nothing typed closes at once, as before.
    wb.select_tab(empty)
    wb.close_tab(empty)
    expect(dialog).to_be_hidden()

    # Confirmed by keyboard: Shift+Tab to "Close tab", Enter. The tab is closed.
    wb.tab(drafted).get_by_role("button", name=re.compile(r"^Close ")).click()
    expect(dialog.get_by_role("button", name="Keep tab")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    expect(dialog.get_by_role("button", name="Close tab")).to_be_focused()
    page.keyboard.press("Enter")
    expect(dialog).to_be_hidden()
    expect(wb.tab(drafted)).to_have_count(0)
    assert get_tab(api, drafted)["state"] == "closed"


def test_closing_a_tab_with_a_queued_prompt_asks_first(team, open_page, tmp_path: Path):
    api = team.api()
    # A repository that does not exist: the tab fails and keeps its prompts queued.
    create_task(
        api, team.workspace_id, "Queued work", repository=str(tmp_path / "none"), branch="main"
    )
    wb = open_page(team.owner)
    wb.select_task("Queued work")
    tab_id = wb.open_tab()
    wb.expect_state(tab_id, "error")
    wb.composer.fill("run this once the agent is there")
    wb.send_button.click()
    expect(wb.composer).to_have_value("")
    expect(wb.transcript.locator(".message-user")).to_have_attribute("data-state", "queued")

    wb.tab(tab_id).get_by_role("button", name=re.compile(r"^Close ")).click()
    dialog = wb.page.get_by_role("dialog")
    expect(dialog).to_contain_text("1 prompt waiting for the agent will not be sent")
    expect(dialog.locator("#close-draft")).to_be_hidden()  # no draft, only the queued prompt
    dialog.get_by_role("button", name="Close tab").click()
    expect(wb.tab(tab_id)).to_have_count(0)
    assert get_tab(api, tab_id)["state"] == "closed"


def test_archiving_a_task_waits_behind_an_undo_and_another_page_keeps_its_draft(team, open_page):
    api = team.api()
    undone = create_task(api, team.workspace_id, "Archive me, then undo")
    archived = create_task(api, team.workspace_id, "Archive me for real")
    alice = open_page(team.owner)
    bob = open_page(team.member)
    archive_posts: list[str] = []

    def record(request: Request) -> None:
        if request.method == "POST" and request.url.endswith("/archive/"):
            archive_posts.append(request.url)

    alice.page.on("request", record)
    alice.select_task("Archive me, then undo")
    tab_id = alice.open_tab()
    alice.composer.fill("words I still want")
    toast = alice.page.locator("#toast")

    # Archive: gone from the list at once, another task shown, an Undo offered and focused.
    alice.page.get_by_role("button", name="Archive", exact=True).click()
    expect(alice.task("Archive me, then undo")).to_have_count(0)
    expect(alice.task_heading).not_to_have_text("Archive me, then undo")
    expect(toast).to_be_visible()
    expect(toast).to_contain_text("Archived “Archive me, then undo”. Its draft goes with it.")
    undo = toast.get_by_role("button", name="Undo")
    expect(undo).to_be_focused()
    screenshot(alice.page, "archive-undo")

    # Undo (by keyboard): the task, its tab and the draft are back; nothing was sent.
    alice.page.keyboard.press("Enter")
    expect(toast).to_be_hidden()
    expect(alice.task_heading).to_have_text("Archive me, then undo")
    expect(alice.active_tab).to_have_attribute("data-tab-id", tab_id)
    expect(alice.composer).to_have_value("words I still want")

    # Bob looks at the other task, with a draft, when Alice archives it for real.
    bob.select_task("Archive me for real")
    bob_tab = bob.open_tab()
    bob.composer.fill("Bob's unsent thought")
    expect(alice.tab(bob_tab)).to_have_count(0)  # (Alice is on the other task)

    alice.select_task("Archive me for real")
    with alice.page.expect_response(
        lambda response: response.url.endswith(f"/api/tasks/{archived['id']}/archive/"),
        timeout=30_000,
    ) as answer:
        alice.page.get_by_role("button", name="Archive", exact=True).click()
        expect(toast).to_be_visible()
    assert answer.value.status == 200
    expect(toast).to_be_hidden()
    # The undone archive's timer was older: had it survived the Undo, it would have fired
    # first. Only the second archive was ever sent.
    assert archive_posts == [f"{team.base_url}/api/tasks/{archived['id']}/archive/"]
    assert get_task(api, archived["id"])["archived"] is True
    assert get_task(api, undone["id"])["archived"] is False
    expect(alice.page.locator("#task-archived")).to_be_hidden()  # archived here: no notice

    # Bob's page says so instead of jumping away, and keeps his draft.
    notice = bob.page.locator("#task-archived")
    expect(notice).to_be_visible()
    expect(notice.get_by_role("heading")).to_have_text("“Archive me for real” was archived")
    expect(notice.get_by_role("textbox")).to_have_value("Bob's unsent thought")
    expect(bob.page.locator("#task-view")).to_be_hidden()


def test_a_task_archived_elsewhere_shows_a_notice_with_every_draft_to_copy(team, open_page):
    api = team.api()
    task = create_task(api, team.workspace_id, "Archived under me")
    create_task(api, team.workspace_id, "Still here")
    wb = open_page(team.owner)
    page = wb.page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=team.base_url)
    wb.mark_document()
    wb.select_task("Archived under me")
    first = wb.open_tab()
    wb.composer.fill("draft in the first tab")
    second = wb.open_tab()
    wb.composer.fill("draft in the second tab,\nstill in the composer")
    expect(wb.tab(first)).not_to_have_attribute("data-active", "true")

    # Archived through the REST API, as another client would.
    response = team.api(team.member).post(f"/api/tasks/{task['id']}/archive/", json={})
    assert response.status_code == 200, response.text

    notice = page.locator("#task-archived")
    expect(notice).to_be_visible()
    expect(notice.get_by_role("heading")).to_have_text("“Archived under me” was archived")
    expect(notice.get_by_role("heading")).to_be_focused()  # the focus was in the composer
    expect(notice).to_contain_text("The 2 drafts you had typed are kept below")
    drafts = notice.get_by_role("textbox")
    expect(drafts).to_have_count(2)
    expect(drafts.nth(0)).to_have_value("draft in the first tab")
    expect(drafts.nth(1)).to_have_value("draft in the second tab,\nstill in the composer")
    for draft in drafts.all():
        expect(draft).not_to_be_editable()
    expect(page.locator("#task-view")).to_be_hidden()
    expect(wb.task("Archived under me")).to_have_count(0)
    expect(wb.task("Still here")).not_to_have_attribute("aria-current", "true")  # no jump
    screenshot(page, "archived-elsewhere")

    copy = notice.get_by_role("button", name=re.compile(r"^Copy the draft in "))
    copy.nth(1).click()
    expect(notice.locator(".copy-status").nth(1)).to_have_text("Copied")
    clipboard = page.evaluate("navigator.clipboard.readText()")
    assert clipboard == "draft in the second tab,\nstill in the composer"
    assert get_tab(api, second)["state"] == "closed"

    # Dismissed: the workbench goes on with the other task; the same document throughout.
    notice.get_by_role("button", name="Dismiss").click()
    expect(notice).to_be_hidden()
    expect(wb.task_heading).to_have_text("Still here")
    assert wb.still_same_document()


def test_a_task_archived_while_the_page_was_disconnected_shows_the_notice_on_return(
    team, open_page, make_daphne_server, console
):
    """The events that would have said so are gone by the time the page is back (pruned), so
    it gets a fresh snapshot without the task: the page asks the server about it."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    from core import services as core_services

    # The page talks to a Daphne of its own, stopped below; REST changes go to the usual one.
    server = make_daphne_server()
    api = team.api()
    task = create_task(api, team.workspace_id, "Archived while I was away")
    create_task(api, team.workspace_id, "Still here")
    wb = open_page(team.owner, base_url=server.url)
    wb.mark_document()
    wb.select_task("Archived while I was away")
    wb.open_tab()
    wb.composer.fill("words typed before the outage")

    console.allow(r"WebSocket connection to '.*' failed")
    console.allow(r"net::ERR_CONNECTION_REFUSED")
    console.allow(r"Failed to load resource")  # the draft's save, refused while it is down
    server.stop()
    expect(wb.connection).to_have_attribute("data-state", "reconnecting")

    response = team.api(team.member).post(f"/api/tasks/{task['id']}/archive/", json={})
    assert response.status_code == 200, response.text

    def prune() -> int:  # off Playwright's event loop, where the ORM refuses to run
        try:
            return core_services.events_prune(older_than_hours=0)
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(prune).result() > 0

    server.start()
    expect(wb.connection).to_have_text("Connected", timeout=30_000)
    notice = wb.page.locator("#task-archived")
    expect(notice).to_be_visible()
    expect(notice.get_by_role("heading")).to_have_text("“Archived while I was away” was archived")
    expect(notice.get_by_role("textbox")).to_have_value("words typed before the outage")
    expect(wb.page.locator("#task-view")).to_be_hidden()
    expect(wb.task("Archived while I was away")).to_have_count(0)
    expect(wb.task("Still here")).not_to_have_attribute("aria-current", "true")  # no jump
    assert wb.still_same_document()


def test_a_draft_only_this_browser_holds_outlives_a_snapshot_whose_first_page_lacks_its_task(
    team, open_page, console
):
    """The snapshot is the workbench's first page (the 50 newest tasks): a draft of a tab
    further down is kept until the server has it or says the tab is closed, never dropped
    for being absent from that page."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    from tasks_app.models import Task
    from tests.factories import TaskFactory

    api = team.api()
    task = create_task(api, team.workspace_id, "An older task")
    kept = open_tab(api, task["id"])
    closed = open_tab(api, task["id"])
    wb = open_page(team.owner)
    wb.select_task("An older task")

    # No save reaches the server: what is typed lives in this browser only.
    console.allow(r"Failed to load resource")
    refused: list[str] = []

    def refuse_drafts(route: Route) -> None:
        if route.request.method == "PATCH":
            refused.append(route.request.url)
            route.abort()
        else:
            route.continue_()

    wb.page.route("**/api/tabs/*/", refuse_drafts)
    typed = {kept["id"]: "typed here, never saved", closed["id"]: "typed in a tab closed later"}
    for tab_id, text in typed.items():
        wb.select_tab(tab_id)
        with wb.page.expect_request(lambda r, tab=tab_id: r.method == "PATCH" and tab in r.url):
            wb.composer.fill(text)  # its save, once the typing pauses, is refused
    assert get_tab(api, kept["id"])["draft"] == ""

    def bulk() -> None:  # off Playwright's event loop, where the ORM refuses to run
        Task.objects.bulk_create(
            [
                TaskFactory.build(workspace_id=team.workspace_id, title=f"newer {n}")
                for n in range(55)
            ]
        )
        connection.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(bulk).result()

    # A fresh page load (no task in the URL): its snapshot holds the newest tasks only.
    wb.page.goto("/")
    expect(wb.connection).to_have_text("Connected")
    expect(wb.page.locator("#task-list .task-item")).to_have_count(50)
    expect(wb.task("An older task")).to_have_count(0)
    wb.page.get_by_role("button", name="Show more tasks").scroll_into_view_if_needed()
    wb.select_task("An older task")
    wb.select_tab(kept["id"])
    expect(wb.composer).to_have_value(typed[kept["id"]])
    wb.select_tab(closed["id"])
    expect(wb.composer).to_have_value(typed[closed["id"]])

    # The second tab is closed elsewhere; the network is back; the page is opened afresh:
    # the draft of the open tab is saved (its task still not on the first page), the closed
    # tab's answer says it is closed, and only then are the local copies forgotten.
    assert api.delete(f"/api/tabs/{closed['id']}/").status_code in (200, 204)
    wb.page.unroute("**/api/tabs/*/", refuse_drafts)
    wb.page.goto("about:blank")
    wb.page.goto("/")
    expect(wb.connection).to_have_text("Connected")
    wait_until(
        lambda: get_tab(api, kept["id"])["draft"] == typed[kept["id"]],
        message="the kept draft never reached the server",
    )
    wb.page.wait_for_function("() => localStorage.getItem('workbench.drafts') === '{}'")
