"""Issue 4: the browser workbench, live, in real headless Chromium against the real service."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import expect

from tests.e2e.helpers import (
    create_task,
    get_tab,
    make_repository,
    screenshot,
    wait_for_tab,
)
from tests.helpers import open_tab, wait_until


def test_a_new_tab_shows_its_provisioning_then_becomes_ready_without_a_reload(team, open_page):
    wb = open_page(team.owner)
    wb.mark_document()
    wb.create_task("Fix the flaky login test")
    expect(wb.task("Fix the flaky login test")).to_contain_text("Not started")

    tab_id = wb.open_tab()
    # Shown at once, pending, with the provisioning step it waits on and the time it took.
    expect(wb.tab(tab_id)).to_have_attribute("data-state", "pending_provision")
    expect(wb.status).to_contain_text("Preparing environment")
    expect(wb.status.locator(".current-step")).to_have_text("simulated delay")
    expect(wb.status.locator(".elapsed")).to_have_text(re.compile(r"^[1-9]\d* s$"))
    expect(wb.task("Fix the flaky login test")).to_contain_text("Provisioning")
    expect(wb.send_button).to_be_enabled()  # a prompt sent now waits for the agent
    expect(wb.composer_reason).to_contain_text("Queued prompts are sent once the agent is ready")
    expect(wb.composer).to_be_editable()
    screenshot(wb.page, "pending")

    wb.expect_state(tab_id, "ready")
    expect(wb.send_button).to_be_enabled()
    expect(wb.status).to_contain_text("The agent is ready")
    expect(wb.task("Fix the flaky login test")).to_contain_text("Ready")
    expect(wb.steps).to_contain_text("install agent")

    wb.composer.fill("Please run the test suite")
    wb.send_button.click()
    expect(wb.composer).to_have_value("")
    expect(wb.transcript.locator(".message-user")).to_contain_text("Please run the test suite")
    reply = wb.transcript.locator(".message-agent")
    expect(reply).to_have_attribute("data-state", "complete", timeout=30_000)
    expect(reply).to_contain_text("Please run the test suite")  # the mock agent echoes
    screenshot(wb.page, "ready")
    assert wb.still_same_document()


def test_a_pending_tab_and_a_ready_tab_can_be_closed(team, open_page):
    api = team.api()
    create_task(api, team.workspace_id, "Close things")
    wb = open_page(team.owner)
    wb.select_task("Close things")

    doomed = wb.open_tab()
    kept = wb.open_tab()
    expect(wb.tab(doomed)).to_have_attribute("data-state", "pending_provision")
    wb.close_tab(doomed)
    assert get_tab(api, doomed)["state"] == "closed"
    expect(wb.active_tab).to_have_attribute("data-tab-id", kept)

    wb.expect_state(kept, "ready")
    assert get_tab(api, doomed)["state"] == "closed"  # closed while pending: never ready
    wb.close_tab(kept)
    expect(wb.page.locator("#no-tab")).to_be_visible()
    assert get_tab(api, kept)["state"] == "closed"


def test_an_error_tab_shows_the_reason_and_retry_recovers_it(team, open_page, tmp_path: Path):
    repository = tmp_path / "missing-repo"
    wb = open_page(team.owner)
    wb.create_task("Work on a repository", repository=str(repository), branch="main")

    tab_id = wb.open_tab()
    wb.expect_state(tab_id, "error")
    expect(wb.status).to_contain_text("The repository could not be cloned")
    expect(wb.status).to_contain_text("does not exist")  # the raw text, behind Details
    expect(wb.send_button).to_be_enabled()
    expect(wb.composer_reason).to_contain_text("retry the tab")
    expect(wb.task("Work on a repository")).to_contain_text("Failed")
    screenshot(wb.page, "error")

    # A second failed tab can be closed.
    other = wb.open_tab()
    wb.expect_state(other, "error")
    wb.close_tab(other)
    wb.select_tab(tab_id)

    make_repository(repository, "main")
    wb.status.get_by_role("button", name="Retry", exact=True).click()
    expect(wb.status).not_to_contain_text("could not be cloned")
    wb.expect_state(tab_id, "ready")
    expect(wb.send_button).to_be_enabled()
    tab = get_tab(team.api(), tab_id)
    assert tab["attempt"] == 2 and tab["error_code"] == ""


def test_two_pages_of_a_workspace_see_each_others_changes_live(team, open_page):
    alice = open_page(team.owner)
    bob = open_page(team.member)
    bob.mark_document()

    alice.create_task("Pair on the parser")
    expect(bob.task("Pair on the parser")).to_be_visible()
    bob.select_task("Pair on the parser")

    tab_id = alice.open_tab()
    expect(bob.tab(tab_id)).to_be_visible()
    bob.select_tab(tab_id)
    expect(bob.status).to_contain_text("Preparing environment")
    bob.expect_state(tab_id, "ready")
    alice.expect_state(tab_id, "ready")

    second = bob.open_tab()
    expect(alice.tab(second)).to_be_visible()
    alice.close_tab(tab_id)
    expect(bob.tab(tab_id)).to_have_count(0)
    expect(bob.tabs()).to_have_count(1)
    assert bob.still_same_document()


def test_the_page_reconnects_after_the_server_goes_away_and_catches_up(
    team, open_page, make_daphne_server, console
):
    # The page talks to a Daphne of its own, cut below; REST changes go to the usual one.
    server = make_daphne_server()
    api = team.api()
    task = create_task(api, team.workspace_id, "Survive a restart")
    wb = open_page(team.owner, base_url=server.url)
    wb.mark_document()
    wb.select_task("Survive a restart")

    # The browser reports each refused reconnect attempt itself; those are expected here.
    console.allow(r"WebSocket connection to '.*' failed")
    console.allow(r"net::ERR_CONNECTION_REFUSED")
    server.stop()
    expect(wb.connection).to_have_attribute("data-state", "reconnecting")
    expect(wb.connection).to_contain_text("Reconnecting")
    screenshot(wb.page, "reconnecting")

    # Changes the page cannot hear about while it is disconnected.
    tab = open_tab(api, task["id"])
    assert api.patch(f"/api/tasks/{task['id']}/", json={"title": "Survived"}).status_code == 200

    server.start()
    expect(wb.connection).to_have_text("Connected", timeout=30_000)
    expect(wb.task_heading).to_have_text("Survived")
    expect(wb.tab(tab["id"])).to_be_visible()
    wb.expect_state(tab["id"], "ready")  # and live again afterwards
    create_task(api, team.workspace_id, "After the restart")
    expect(wb.task("After the restart")).to_be_visible()
    assert wb.still_same_document()


def test_drafts_survive_switching_tabs_and_reloading_the_page(team, open_page):
    api = team.api()
    create_task(api, team.workspace_id, "Write drafts")
    wb = open_page(team.owner)
    wb.select_task("Write drafts")
    first = wb.open_tab()
    second = wb.open_tab()

    wb.select_tab(first)
    wb.composer.fill("half a thought about the first tab")
    wb.select_tab(second)
    expect(wb.composer).to_have_value("")
    wb.composer.fill("notes for the second")
    wb.select_tab(first)
    expect(wb.composer).to_have_value("half a thought about the first tab")

    wb.page.reload()
    expect(wb.connection).to_have_text("Connected")
    expect(wb.active_tab).to_have_attribute("data-tab-id", first)
    expect(wb.composer).to_have_value("half a thought about the first tab")
    wb.select_tab(second)
    expect(wb.composer).to_have_value("notes for the second")
    # The server has them too (another browser would see them).
    wait_until(
        lambda: get_tab(api, first)["draft"] == "half a thought about the first tab",
        message="the first tab's draft never reached the server",
    )
    assert get_tab(api, second)["draft"] == "notes for the second"


def test_switching_tabs_saves_the_draft_it_leaves_once(team, open_page):
    api = team.api()
    task = create_task(api, team.workspace_id, "One save per switch")
    first = open_tab(api, task["id"])
    second = open_tab(api, task["id"])
    wb = open_page(team.owner)
    wb.select_task("One save per switch")
    wb.select_tab(first["id"])
    saves: list[str] = []
    wb.page.on(
        "request",
        lambda request: (
            saves.append(request.url)
            if request.method == "PATCH" and first["id"] in request.url
            else None
        ),
    )
    wb.composer.fill("left behind by a switch")
    wb.select_tab(second["id"])  # saves the draft it leaves (and its debounce, if it fired)
    wait_until(
        lambda: get_tab(api, first["id"])["draft"] == "left behind by a switch",
        message="the draft never reached the server",
    )
    # Its answer is in once the local copy is gone: every save of it was sent by then.
    wb.page.wait_for_function("() => localStorage.getItem('workbench.drafts') === '{}'")
    assert len(saves) == 1, saves


def test_a_reply_in_a_tab_not_viewed_shows_an_unread_dot_until_it_is_opened(team, open_page):
    api = team.api()
    task = create_task(api, team.workspace_id, "Talk to the agent")
    talked_to = open_tab(api, task["id"])
    viewed = open_tab(api, task["id"])
    wait_for_tab(api, talked_to["id"], "ready")
    wait_for_tab(api, viewed["id"], "ready")

    wb = open_page(team.owner)
    wb.select_task("Talk to the agent")
    wb.select_tab(viewed["id"])
    expect(wb.unread_dot(talked_to["id"])).to_be_hidden()

    sent = api.post(f"/api/tabs/{talked_to['id']}/messages/", json={"text": "anything new?"})
    assert sent.status_code == 202, sent.text
    expect(wb.unread_dot(talked_to["id"])).to_be_visible(timeout=30_000)
    expect(wb.tab(talked_to["id"]).locator(".tab-select")).to_have_attribute(
        "aria-label", re.compile("unread replies")
    )
    expect(wb.unread_dot(viewed["id"])).to_be_hidden()
    screenshot(wb.page, "unread")

    wb.select_tab(talked_to["id"])
    expect(wb.unread_dot(talked_to["id"])).to_be_hidden()
    expect(wb.transcript.locator(".message-agent")).to_contain_text("anything new?")
    wait_until(
        lambda: get_tab(api, talked_to["id"])["unread"] is False,
        message="opening the tab did not mark it read",
    )


def test_a_narrow_window_keeps_everything_reachable_by_keyboard(team, open_page):
    wb = open_page(team.owner, width=390, height=844)
    page = wb.page
    # Keyboard only: open the task drawer, type a title, press Enter (the drawer closes),
    # then Tab to "+ New tab" and press Enter.
    page.get_by_role("button", name="Tasks", exact=True).focus()
    page.keyboard.press("Enter")
    expect(page.get_by_label("New task")).to_be_focused()
    page.keyboard.type("Small screen")
    page.keyboard.press("Enter")
    expect(wb.task_heading).to_have_text("Small screen")
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "new-tab":
            break
    else:
        raise AssertionError("Tab never reached the New tab button")
    page.keyboard.press("Enter")
    expect(wb.tabs()).to_have_count(1)
    expect(wb.status).to_contain_text("Preparing environment")
    tab_id = wb.active_tab.get_attribute("data-tab-id")
    assert tab_id
    wb.expect_state(tab_id, "ready")

    # Nothing wider than the window: no sideways scrolling.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, "narrow", full_page=True)


# -- teams ---------------------------------------------------------------------------------


def test_an_owner_manages_members_in_the_panel_and_a_member_sees_no_owner_controls(
    team, open_page, console
):
    # The browser reports each refused request (the unknown user, the last owner) itself.
    console.allow(r"status of (404|409)")
    alice = open_page(team.owner)
    bob = open_page(team.member)

    alice.open_members()
    panel = alice.members
    expect(panel.get_by_label("Username or email")).to_be_focused()
    expect(panel).to_contain_text("Members of Acme")
    expect(alice.member_row("alice")).to_contain_text("you")
    expect(panel.get_by_label("Role of alice (you)")).to_have_value("owner")
    expect(panel.get_by_label("Role of bob")).to_have_value("member")

    panel.get_by_label("Username or email").fill("nobody")
    panel.get_by_role("button", name="Add", exact=True).click()
    expect(alice.members_error).to_contain_text("No user with the username 'nobody'")

    panel.get_by_label("Username or email").fill("carol")
    panel.get_by_label("Role", exact=True).select_option("member")
    panel.get_by_role("button", name="Add", exact=True).click()
    expect(alice.member_row("carol")).to_be_visible()
    expect(alice.members_status).to_have_text("Added carol as member.")
    expect(alice.members_error).to_be_hidden()

    # bob's panel is live too, and shows him no owner controls.
    bob.open_members()
    expect(bob.member_row("carol")).to_contain_text("member")
    expect(bob.member_row("bob")).to_contain_text("you")
    expect(bob.members.get_by_label("Username or email")).to_be_hidden()
    expect(bob.members.get_by_role("combobox")).to_have_count(0)
    expect(bob.members.get_by_role("button", name=re.compile(r"^Remove"))).to_have_count(0)
    expect(bob.members.get_by_role("button", name="Leave workspace")).to_be_visible()

    panel.get_by_label("Role of carol").select_option("owner")
    expect(alice.members_status).to_have_text("carol is now an owner.")
    expect(bob.member_row("carol")).to_contain_text("owner")
    members = {m["username"]: m["role"] for m in team.api().get(
        f"/api/workspaces/{team.workspace_id}/members/").json()}  # fmt: skip
    assert members == {"alice": "owner", "bob": "member", "carol": "owner"}

    panel.get_by_role("button", name="Remove carol").click()
    expect(alice.member_row("carol")).to_have_count(0)
    expect(bob.member_row("carol")).to_have_count(0)
    expect(panel.get_by_label("Username or email")).to_be_focused()

    # The last owner cannot leave: asked to confirm, then refused with the server's reason.
    panel.get_by_role("button", name="Leave workspace").click()
    expect(panel.get_by_role("button", name="Cancel")).to_be_focused()
    panel.get_by_role("button", name="Leave", exact=True).click()
    expect(alice.members_error).to_contain_text("the last owner cannot leave")
    expect(panel.get_by_role("button", name="Leave workspace")).to_be_focused()
    expect(alice.connection).to_have_text("Connected")
    screenshot(alice.page, "members")

    # Escape closes the panel and gives focus back to the button that opened it.
    alice.page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(alice.members_button).to_be_focused()


def test_a_removed_members_page_loses_access_at_once_and_offers_their_other_workspaces(
    team, open_page
):
    other = team.api(team.member).post("/api/workspaces/", json={"name": "Side project"})
    assert other.status_code == 201, other.text
    create_task(team.api(), team.workspace_id, "Secret plans")
    bob = open_page(team.member)
    bob.workspace_select.select_option(label="Acme")
    expect(bob.task("Secret plans")).to_be_visible()
    bob.mark_document()

    alice = open_page(team.owner)
    alice.open_members()
    alice.members.get_by_role("button", name="Remove bob").click()
    expect(alice.member_row("bob")).to_have_count(0)

    lost = bob.page.get_by_role("heading", name="You no longer have access to “Acme”")
    expect(lost).to_be_visible()
    expect(lost).to_be_focused()
    expect(bob.task("Secret plans")).to_have_count(0)
    expect(bob.connection).to_contain_text("no access")
    expect(bob.workspace_select.locator("option", has_text="Acme")).to_have_count(0)
    screenshot(bob.page, "no-access")

    bob.page.get_by_role("button", name="Side project").click()
    expect(bob.connection).to_have_text("Connected")
    expect(bob.workspace_select).to_have_value(str(other.json()["id"]))
    expect(lost).to_be_hidden()
    expect(bob.page.locator("#no-task")).to_be_visible()
    assert bob.still_same_document()


def test_two_members_unread_is_their_own_the_viewer_stays_read(team, open_page):
    api = team.api()
    bob_api = team.api(team.member)
    task = create_task(api, team.workspace_id, "Share a tab")
    watched = open_tab(api, task["id"])["id"]
    elsewhere = open_tab(api, task["id"])["id"]
    wait_for_tab(api, watched, "ready")
    wait_for_tab(api, elsewhere, "ready")

    alice = open_page(team.owner)
    alice.select_task("Share a tab")
    alice.select_tab(watched)
    bob = open_page(team.member)
    bob.select_task("Share a tab")
    bob.select_tab(elsewhere)

    sent = api.post(f"/api/tabs/{watched}/messages/", json={"text": "status?"})
    assert sent.status_code == 202, sent.text
    expect(bob.unread_dot(watched)).to_be_visible(timeout=30_000)
    expect(alice.transcript.locator(".message-agent")).to_have_attribute(
        "data-state", "complete", timeout=30_000
    )
    expect(alice.unread_dot(watched)).to_be_hidden()
    assert get_tab(api, watched)["unread"] is False
    assert get_tab(bob_api, watched)["unread"] is True
    expect(bob.page).to_have_title("(1) Workbench")
    expect(alice.page).to_have_title("Workbench")

    # bob opens it: read for him too (the page says so over the socket: `view`).
    bob.select_tab(watched)
    expect(bob.unread_dot(watched)).to_be_hidden()
    wait_until(
        lambda: get_tab(bob_api, watched)["unread"] is False,
        message="viewing the tab did not mark it read for bob",
    )

    # A hidden page views nothing: a reply then is unread for alice, until she is back.
    set_visibility(alice, "hidden")
    sent = api.post(f"/api/tabs/{watched}/messages/", json={"text": "and now?"})
    assert sent.status_code == 202, sent.text
    expect(alice.unread_dot(watched)).to_be_visible(timeout=30_000)
    expect(alice.page).to_have_title("(1) Workbench")
    set_visibility(alice, "visible")
    expect(alice.unread_dot(watched)).to_be_hidden()
    wait_until(
        lambda: get_tab(api, watched)["unread"] is False,
        message="coming back to the page did not mark the tab read for alice",
    )
    expect(bob.unread_dot(watched)).to_be_hidden()  # bob was viewing it all along


def test_a_member_leaves_a_workspace_from_the_panel(team, open_page):
    bob = open_page(team.member)
    bob.open_members()
    bob.members.get_by_role("button", name="Leave workspace").click()
    bob.members.get_by_role("button", name="Leave", exact=True).click()

    expect(bob.members).to_be_hidden()
    expect(bob.page.get_by_role("heading", name="You left “Acme”")).to_be_focused()
    # No workspace left: the page offers to create one.
    expect(bob.page.get_by_label("Create a workspace")).to_be_visible()
    members = team.api().get(f"/api/workspaces/{team.workspace_id}/members/").json()
    assert [m["username"] for m in members] == ["alice"]


def set_visibility(wb, state: str) -> None:
    """As when the window is minimised or another browser tab is in front (headless
    Chromium's pages are always visible, so the page's own view of it is replaced)."""
    wb.page.evaluate(
        """state => {
            const property = { value: state, configurable: true };
            Object.defineProperty(document, "visibilityState", property);
            document.dispatchEvent(new Event("visibilitychange"));
        }""",
        state,
    )


def test_a_model_chosen_while_pending_is_what_the_session_runs_and_can_be_changed_when_ready(
    team, open_page
):
    api = team.api()
    wb = open_page(team.owner)
    wb.create_task("Pick a model")
    tab_id = wb.open_tab()
    expect(wb.tab(tab_id)).to_have_attribute("data-state", "pending_provision")

    # Before the sandbox is ready its models are not known: a name is typed.
    expect(wb.model).to_have_attribute("placeholder", "default")
    wb.model.fill("mock-fast")
    wb.model.press("Enter")
    expect(wb.model_note).to_have_text("Model set to mock-fast. Applies when the session starts.")
    assert get_tab(api, tab_id)["model"] == "mock-fast"

    wb.expect_state(tab_id, "ready")
    # Now a select of what the sandbox offers, on the chosen model, which the session runs.
    expect(wb.model).to_have_js_property("tagName", "SELECT")
    expect(wb.model).to_have_value("mock-fast")
    expect(wb.model_note).to_contain_text("The session runs Mock Fast.")
    tab = get_tab(api, tab_id)
    assert (tab["model"], tab["session_model"]) == ("mock-fast", "mock-fast")

    wb.model.select_option("mock")  # a ready tab: given to the live session at once
    expect(wb.model_note).to_contain_text("The session runs Mock.")
    tab = get_tab(api, tab_id)
    assert (tab["model"], tab["session_model"]) == ("mock", "mock")


def test_a_big_workspace_shows_its_first_page_and_the_rest_as_the_list_scrolls(team, open_page):
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    from tasks_app.models import Task
    from tests.factories import TaskFactory

    def bulk() -> None:  # off Playwright's event loop, where the ORM refuses to run
        workspace_id = team.workspace_id
        Task.objects.bulk_create(
            [TaskFactory.build(workspace_id=workspace_id, title=f"bulk {n}") for n in range(120)]
        )
        connection.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(bulk).result()
    wb = open_page(team.owner)
    items = wb.page.locator("#task-list .task-item")
    more = wb.page.get_by_role("button", name="Show more tasks")
    expect(items).to_have_count(50)  # the snapshot: the first page only
    more.scroll_into_view_if_needed()  # the end of the list comes into view: the next page
    expect(items).to_have_count(100)
    more.click()
    expect(items).to_have_count(120)
    expect(more).to_be_hidden()  # nothing left to load
    wb.select_task("bulk 0")  # the oldest, from the last page, opens like any other

    # A link to it opens it at once, though it is not on the first page.
    link = wb.page.url
    assert "task=" in link
    other = open_page(team.owner)
    other.page.goto("about:blank")  # a fresh load of the link, as when pasted in a new tab
    other.page.goto(link)
    expect(other.task_heading).to_have_text("bulk 0")
    expect(other.page.locator("#task-list .task-item")).to_have_count(51)
