"""The workbench websocket on the real ASGI application: who may connect, what they receive,
resume, heartbeats and error frames. Every frame received is checked against the schema."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from rest_framework.authtoken.models import Token

from config.asgi import application
from core import services as core_services
from core.events import event_frame
from core.models import Event, Workspace
from tests.factories import TabFactory, TaskFactory
from workbench import selectors, services
from workbench.consumers import MAX_FRAME_BYTES
from workbench.models import TabState, TabUserState

pytestmark = pytest.mark.django_db(transaction=True)

SCHEMA_PATH = Path(settings.BASE_DIR) / "docs" / "schema" / "workbench-stream.schema.json"
SERVER_FRAMES = Draft202012Validator(
    json.loads(SCHEMA_PATH.read_text()), format_checker=Draft202012Validator.FORMAT_CHECKER
)
TIMEOUT = 5


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    """Run one async scenario; the consumer's database calls run on this (the test's) thread."""
    async_to_sync(scenario)()


def token_header(user) -> list[tuple[bytes, bytes]]:
    key = Token.objects.get_or_create(user=user)[0].key
    return [(b"authorization", f"Token {key}".encode())]


def url(workspace: Workspace, query: str = "") -> str:
    return f"/ws/workspaces/{workspace.pk}/" + (f"?{query}" if query else "")


async def open_socket(path: str, headers: list[tuple[bytes, bytes]] | None = None):
    communicator = WebsocketCommunicator(application, path, headers=headers or [])
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected
    return communicator


async def receive(communicator: WebsocketCommunicator) -> dict[str, Any]:
    """The next frame, which must be valid by the schema."""
    frame = await communicator.receive_json_from(timeout=TIMEOUT)
    SERVER_FRAMES.validate(frame)
    return frame


async def send_text(communicator: WebsocketCommunicator, text: str) -> None:
    # send_to refuses an empty string; a client can send one.
    await communicator.send_input({"type": "websocket.receive", "text": text})


async def ping_answers(communicator: WebsocketCommunicator) -> dict[str, Any]:
    await communicator.send_json_to({"type": "ping"})
    pong = await receive(communicator)
    assert pong["type"] == "pong"
    return pong


async def assert_closed_forbidden(communicator: WebsocketCommunicator) -> None:
    output = await communicator.receive_output(timeout=TIMEOUT)
    assert output == {"type": "websocket.close", "code": 4403}
    assert await communicator.receive_nothing()


def plain(data: Any) -> Any:
    return json.loads(json.dumps(data))


def current_snapshot(workspace: Workspace, user) -> dict[str, Any]:
    fresh = Workspace.objects.get(pk=workspace.pk)
    return plain(selectors.workbench_snapshot(workspace=fresh, user_id=user.pk))


call = database_sync_to_async  # a service call from the scenario, committed on this thread


# -- who may connect ------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["header", "query"])
def test_a_member_with_a_token_first_receives_the_snapshot(via, workspace, bob):
    TabFactory(task=TaskFactory(workspace=workspace))
    TabFactory(task=TaskFactory(workspace=workspace), state=TabState.CLOSED)
    expected = current_snapshot(workspace, bob)
    headers = token_header(bob)
    key = headers[0][1].decode().split()[1]
    seq = Workspace.objects.get(pk=workspace.pk).event_seq

    async def scenario() -> None:
        if via == "header":
            ws = await open_socket(url(workspace), headers)
        else:
            ws = await open_socket(url(workspace, f"token={key}"))
        snapshot = await receive(ws)
        assert snapshot == expected
        assert snapshot["seq"] == seq
        assert len(snapshot["tabs"]) == 1  # the closed tab is not in it
        assert await ws.receive_nothing()
        await ws.disconnect()

    run(scenario)


def test_a_member_logged_in_with_a_session_cookie_receives_the_snapshot(workspace, alice):
    browser = Client()
    assert browser.login(username="alice", password="pw")
    session = browser.cookies[settings.SESSION_COOKIE_NAME].value
    cookie = f"{settings.SESSION_COOKIE_NAME}={session}".encode()

    async def scenario() -> None:
        ws = await open_socket(url(workspace), [(b"cookie", cookie)])
        snapshot = await receive(ws)
        assert snapshot["type"] == "snapshot"
        assert snapshot["workspace"]["id"] == workspace.pk
        await ws.disconnect()

    run(scenario)


@pytest.mark.parametrize("who", ["anonymous", "outsider", "bad_token", "bad_query_token"])
def test_everyone_but_a_member_is_closed_with_4403_and_no_snapshot(who, workspace, charlie):
    headers = {
        "anonymous": [],
        "outsider": token_header(charlie),
        "bad_token": [(b"authorization", b"Token not-a-real-key")],
        "bad_query_token": [],
    }[who]
    query = "token=not-a-real-key" if who == "bad_query_token" else ""

    async def scenario() -> None:
        ws = await open_socket(url(workspace, query), headers)
        await assert_closed_forbidden(ws)

    run(scenario)


def test_a_member_of_another_workspace_is_closed_with_4403(workspace, charlie):
    other = core_services.workspace_create(user=charlie, name="Charlie's")
    assert other.pk != workspace.pk
    headers = token_header(charlie)

    async def scenario() -> None:
        ws = await open_socket(url(workspace), headers)
        await assert_closed_forbidden(ws)

    run(scenario)


def test_a_member_asking_for_a_workspace_that_does_not_exist_is_closed_with_4403(alice):
    headers = token_header(alice)

    async def scenario() -> None:
        ws = await open_socket("/ws/workspaces/999999/", headers)
        await assert_closed_forbidden(ws)

    run(scenario)


def test_a_browser_on_another_site_is_refused_by_the_origin_check(workspace, alice):
    headers = [*token_header(alice), (b"origin", b"http://evil.example")]

    async def scenario() -> None:
        ws = WebsocketCommunicator(application, url(workspace), headers=headers)
        connected, _ = await ws.connect(timeout=TIMEOUT)
        assert not connected
        assert await ws.receive_nothing()

    run(scenario)


def test_a_browser_on_the_service_own_origin_is_accepted(workspace, alice):
    assert "localhost" in settings.ALLOWED_HOSTS
    headers = [*token_header(alice), (b"host", b"localhost:8000")]

    async def scenario() -> None:
        ws = await open_socket(url(workspace), [*headers, (b"origin", b"http://localhost:8000")])
        assert (await receive(ws))["type"] == "snapshot"
        await ws.disconnect()

    run(scenario)


@pytest.mark.parametrize(
    "origin",
    [
        b"http://localhost:3000",  # another port of the same host
        b"http://localhost",  # port 80, not 8000
        b"https://localhost:8000",  # another scheme
        b"null",
    ],
)
def test_a_browser_on_another_origin_of_the_same_host_is_refused(origin, workspace, alice):
    headers = [*token_header(alice), (b"host", b"localhost:8000"), (b"origin", origin)]

    async def scenario() -> None:
        ws = WebsocketCommunicator(application, url(workspace), headers=headers)
        connected, _ = await ws.connect(timeout=TIMEOUT)
        assert not connected

    run(scenario)


def test_a_browser_on_a_trusted_origin_is_accepted(workspace, alice, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://workbench.example.com"]
    headers = [
        *token_header(alice),
        (b"host", b"127.0.0.1:8000"),  # behind a proxy that rewrites Host
        (b"origin", b"https://workbench.example.com"),
    ]

    async def scenario() -> None:
        ws = await open_socket(url(workspace), headers)
        assert (await receive(ws))["type"] == "snapshot"
        await ws.disconnect()

    run(scenario)


# -- events ---------------------------------------------------------------------------------


def test_changes_arrive_as_events_in_order_with_consecutive_seqs(workspace, alice):
    task = TaskFactory(workspace=workspace)
    tab = TabFactory(task=task)
    headers = token_header(alice)

    async def scenario() -> None:
        ws = await open_socket(url(workspace), headers)
        start = (await receive(ws))["seq"]
        await call(services.tab_update)(tab_id=tab.pk, user=alice, draft="half a thought")
        await call(services.tab_close)(tab_id=tab.pk)
        with mock.patch("workbench.workflows.start_sandbox_run") as dispatched:
            new_tab, _ = await call(services.tab_create)(user=alice, task=task)
        dispatched.assert_called_once()
        frames = [await receive(ws) for _ in range(4)]
        assert [f["seq"] for f in frames] == [start + 1, start + 2, start + 3, start + 4]
        assert all(f["type"] == "event" for f in frames)
        names = ["tab.user_state", "tab.updated", "tab.updated", "sandbox.updated"]
        assert [f["event"] for f in frames] == names
        assert frames[0]["data"] == {"tab": str(tab.pk), "draft": "half a thought"}
        assert frames[1]["data"]["state"] == TabState.CLOSED
        assert frames[2]["data"]["id"] == str(new_tab.pk)
        assert frames[2]["data"]["state"] == TabState.PENDING_PROVISION
        assert await ws.receive_nothing()
        await ws.disconnect()

    run(scenario)


def test_events_of_another_workspace_are_not_sent(workspace, alice, charlie):
    other = core_services.workspace_create(user=charlie, name="Charlie's")
    other_tab = TabFactory(task=TaskFactory(workspace=other))
    headers = token_header(alice)

    async def scenario() -> None:
        ws = await open_socket(url(workspace), headers)
        await receive(ws)
        await call(services.tab_update)(tab_id=other_tab.pk, user=charlie, title="elsewhere")
        assert await ws.receive_nothing()
        await ws.disconnect()

    run(scenario)


# -- resume ---------------------------------------------------------------------------------


def make_events(workspace: Workspace, count: int) -> list[int]:
    """Record `count` tab.updated events; returns their seqs."""
    tab = TabFactory(task=TaskFactory(workspace=workspace))
    owner = workspace.memberships.get(role="owner").user
    for n in range(count):
        services.tab_update(tab_id=tab.pk, user=owner, title=f"title {n}")
    return list(Event.objects.filter(workspace=workspace).values_list("seq", flat=True))


def test_resume_replays_exactly_the_events_after_the_given_seq(workspace, alice):
    seqs = make_events(workspace, 5)
    assert seqs == [1, 2, 3, 4, 5]
    kept = {e.seq: e for e in Event.objects.filter(workspace=workspace)}
    headers = token_header(alice)

    async def scenario() -> None:
        ws = await open_socket(url(workspace), headers)
        assert (await receive(ws))["seq"] == 5
        await ws.send_json_to({"type": "resume", "seq": 2})
        replayed = [await receive(ws) for _ in range(3)]
        assert [f["seq"] for f in replayed] == [3, 4, 5]
        for frame in replayed:
            event = kept[frame["seq"]]
            assert frame == dict(event_frame(event))
        assert await ws.receive_nothing()
        await ws.disconnect()

    run(scenario)


def test_resume_at_the_current_seq_sends_nothing(workspace, alice):
    make_events(workspace, 2)
    headers = token_header(alice)

    async def scenario() -> None:
        ws = await open_socket(url(workspace), headers)
        await receive(ws)
        await ws.send_json_to({"type": "resume", "seq": 2})
        assert await ws.receive_nothing()
        assert (await ping_answers(ws))["seq"] == 2
        await ws.disconnect()

    run(scenario)


@pytest.mark.parametrize("lost", ["all_pruned", "first_missing"])
def test_resume_past_pruned_events_gets_a_fresh_snapshot(lost, workspace, alice):
    make_events(workspace, 4)
    if lost == "all_pruned":
        assert core_services.events_prune(older_than_hours=0) == 4
    else:
        Event.objects.filter(workspace=workspace, seq=2).delete()
    expected = current_snapshot(workspace, alice)
    headers = token_header(alice)

    async def scenario() -> None:
        ws = await open_socket(url(workspace), headers)
        await receive(ws)
        await ws.send_json_to({"type": "resume", "seq": 1})
        again = await receive(ws)
        assert again == expected
        assert again["seq"] == 4
        assert await ws.receive_nothing()
        await ws.disconnect()

    run(scenario)


def test_resume_from_a_seq_the_server_never_issued_gets_a_fresh_snapshot(workspace, alice):
    """A client ahead of the server (its database was restored) would otherwise drop every
    new event as a duplicate and never notice."""
    make_events(workspace, 2)
    headers = token_header(alice)

    async def scenario() -> None:
        ws = await open_socket(url(workspace), headers)
        await receive(ws)
        for ahead in (3, 2**63 - 1, 2**64):
            await ws.send_json_to({"type": "resume", "seq": ahead})
            again = await receive(ws)
            assert again["type"] == "snapshot"
            assert again["seq"] == 2
        await ws.disconnect()

    run(scenario)


@pytest.mark.parametrize("seq", [-1, "3", 1.5, True, None, [1]])
def test_resume_with_an_invalid_seq_gets_an_error_frame(seq, workspace, alice):
    headers = token_header(alice)

    async def scenario() -> None:
        ws = await open_socket(url(workspace), headers)
        await receive(ws)
        await ws.send_json_to({"type": "resume", "seq": seq})
        error = await receive(ws)
        assert error["type"] == "error"
        assert error["code"] == "invalid_seq"
        await ping_answers(ws)
        await ws.disconnect()

    run(scenario)


# -- heartbeats and error frames ------------------------------------------------------------


def test_ping_gets_a_pong_carrying_the_current_seq(workspace, alice):
    make_events(workspace, 3)
    headers = token_header(alice)

    async def scenario() -> None:
        ws = await open_socket(url(workspace), headers)
        await receive(ws)
        assert await ping_answers(ws) == {"type": "pong", "seq": 3}
        await ws.disconnect()

    run(scenario)


BIG = "x" * (MAX_FRAME_BYTES + 1)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ('{"type": "subscribe"}', "unknown_type"),
        ('{"seq": 1}', "unknown_type"),
        ('{"type": ["ping"]}', "unknown_type"),
        ('{"type": {"ping": 1}}', "unknown_type"),
        ("[1, 2]", "unknown_type"),
        ('"ping"', "unknown_type"),
        ("null", "unknown_type"),
        ("{not json", "malformed"),
        ("", "malformed"),
        ("[" * 50_000, "malformed"),  # nested past the decoder's recursion limit
        (json.dumps({"type": "ping", "pad": BIG}), "frame_too_large"),
        ("é" * (MAX_FRAME_BYTES // 2 + 1), "frame_too_large"),  # the limit is in bytes
    ],
    ids=[
        "unknown",
        "no_type",
        "list_type",
        "dict_type",
        "array",
        "string",
        "null",
        "broken",
        "empty",
        "deep",
        "large",
        "large_in_utf8",
    ],
)
def test_a_bad_frame_gets_an_error_frame_and_the_socket_stays_usable(text, code, workspace, alice):
    headers = token_header(alice)

    async def scenario() -> None:
        ws = await open_socket(url(workspace), headers)
        await receive(ws)
        await send_text(ws, text)
        error = await receive(ws)
        assert error["type"] == "error"
        assert error["code"] == code
        assert error["message"]
        await ping_answers(ws)
        assert await ws.receive_nothing()
        await ws.disconnect()

    run(scenario)


def test_a_binary_frame_is_read_as_utf8_text(workspace, alice):
    headers = token_header(alice)

    async def scenario() -> None:
        ws = await open_socket(url(workspace), headers)
        await receive(ws)
        await ws.send_to(bytes_data=b'{"type": "ping"}')
        assert (await receive(ws))["type"] == "pong"
        await ws.send_to(bytes_data=b"\xff\xfe")
        assert (await receive(ws))["code"] == "malformed"
        await ws.send_to(bytes_data=b"x" * (MAX_FRAME_BYTES + 1))
        assert (await receive(ws))["code"] == "frame_too_large"
        await ping_answers(ws)
        await ws.disconnect()

    run(scenario)


def test_a_refused_socket_ignores_frames(workspace, charlie):
    headers = token_header(charlie)

    async def scenario() -> None:
        ws = await open_socket(url(workspace), headers)
        await assert_closed_forbidden(ws)
        await ws.send_json_to({"type": "ping"})
        assert await ws.receive_nothing()

    run(scenario)


# -- fuzz -----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
frame_texts = st.one_of(
    st.text(max_size=200),
    json_values.map(json.dumps),
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["resume", "ping", "pong", "snapshot", "event", ""])
            | json_values,
        },
        optional={"seq": st.integers() | json_values},
    ).map(json.dumps),
)


def is_ping(text: str) -> bool:
    try:
        content = json.loads(text)
    except (ValueError, RecursionError):
        return False
    return isinstance(content, dict) and content.get("type") == "ping"


@hypothesis_settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(texts=st.lists(frame_texts, min_size=1, max_size=4))
def test_no_frame_crashes_the_consumer(texts, workspace, alice):
    if not Event.objects.filter(workspace=workspace).exists():
        make_events(workspace, 3)  # so that a fuzzed resume has events to replay
    headers = token_header(alice)

    async def scenario() -> None:
        ws = await open_socket(url(workspace), headers)
        await receive(ws)
        for text in texts:
            await send_text(ws, text)
            await ws.send_json_to({"type": "ping"})
            pongs = 2 if is_ping(text) else 1
            while pongs:  # whatever the frame earned (errors, events, a snapshot), then pong
                if (await receive(ws))["type"] == "pong":
                    pongs -= 1
        await ws.disconnect()

    run(scenario)


def test_a_reconnecting_client_gets_only_what_it_missed(alice, workspace, dispatched):
    """`?seq=N` on connect replays the events after N instead of sending a snapshot."""
    from asgiref.sync import async_to_sync
    from channels.testing import WebsocketCommunicator
    from rest_framework.authtoken.models import Token

    from config.asgi import application
    from tests.factories import TabFactory
    from workbench import services

    token = Token.objects.create(user=alice).key
    tab = TabFactory(task__workspace=workspace, state="pending_provision")
    services.tab_update(tab_id=tab.pk, user=alice, draft="one")
    services.tab_update(tab_id=tab.pk, user=alice, draft="two")

    async def scenario() -> list[dict]:
        url = f"/ws/workspaces/{workspace.pk}/?seq=1&token={token}"
        communicator = WebsocketCommunicator(application, url)
        connected, _ = await communicator.connect()
        assert connected
        frames = [await communicator.receive_json_from(timeout=5) for _ in range(1)]
        assert await communicator.receive_nothing(timeout=0.2)
        await communicator.disconnect()
        return frames

    frames = async_to_sync(scenario)()
    assert [(f["type"], f["seq"], f["data"]["draft"]) for f in frames] == [("event", 2, "two")]


@pytest.mark.parametrize("seq", ["%C2%B2", "%B2", "1e3", "-1", str(2**63), "9" * 400, "9" * 5000])
def test_a_seq_that_is_not_a_plain_number_in_range_gets_a_snapshot(seq, workspace, bob):
    """'²' passes str.isdigit() but int() refuses it: the connect must not crash."""
    expected = current_snapshot(workspace, bob)
    _, token = token_header(bob)[0]

    async def scenario() -> None:
        key = token.decode().split()[1]
        ws = await open_socket(url(workspace, f"seq={seq}&token={key}"))
        assert await receive(ws) == expected
        await ws.disconnect()

    run(scenario)


@pytest.mark.parametrize("workspace_id", [str(2**63), "9" * 30, "0"])
def test_a_workspace_id_out_of_range_is_refused_like_an_unknown_one(workspace_id, alice):
    """Not an HTTP 500 at the handshake: the ordinary 4403."""
    headers = token_header(alice)

    async def scenario() -> None:
        communicator = await open_socket(f"/ws/workspaces/{workspace_id}/", headers)
        await assert_closed_forbidden(communicator)

    run(scenario)


# -- teams: private state, removal, viewing ---------------------------------------------------


def test_a_members_draft_reaches_only_them_and_the_others_keep_a_gapless_seq(workspace, alice, bob):
    tab = TabFactory(task=TaskFactory(workspace=workspace))
    alice_headers, bob_headers = token_header(alice), token_header(bob)

    async def scenario() -> None:
        mine = await open_socket(url(workspace), alice_headers)
        theirs = await open_socket(url(workspace), bob_headers)
        start = (await receive(mine))["seq"]
        await receive(theirs)
        await call(services.tab_update)(tab_id=tab.pk, user=alice, draft="my own words")
        await call(services.tab_update)(tab_id=tab.pk, user=alice, title="shared")
        own = [await receive(mine) for _ in range(2)]
        seen = [await receive(theirs) for _ in range(2)]
        assert [(f["seq"], f["event"]) for f in own] == [
            (start + 1, "tab.user_state"),
            (start + 2, "tab.updated"),
        ]
        assert own[0]["data"] == {"tab": str(tab.pk), "draft": "my own words"}
        assert [(f["seq"], f["event"], f["data"]) for f in seen] == [
            (start + 1, "private", {}),
            (start + 2, "tab.updated", own[1]["data"]),
        ]
        assert "my own words" not in json.dumps(seen)
        for ws in (mine, theirs):
            await ws.disconnect()

    run(scenario)


def test_resume_gives_another_members_private_event_as_a_private_frame(workspace, alice, bob):
    tab = TabFactory(task=TaskFactory(workspace=workspace))
    services.tab_update(tab_id=tab.pk, user=alice, draft="my own words")
    headers = token_header(bob)

    async def scenario() -> None:
        ws = await open_socket(url(workspace, "seq=0"), headers)
        frame = await receive(ws)
        assert (frame["seq"], frame["event"], frame["data"]) == (1, "private", {})
        await ws.disconnect()

    run(scenario)


def test_a_removed_member_is_closed_at_once_and_the_others_hear_of_it(workspace, alice, bob):
    alice_headers, bob_headers = token_header(alice), token_header(bob)

    async def scenario() -> None:
        owner = await open_socket(url(workspace), alice_headers)
        removed = await open_socket(url(workspace), bob_headers)
        await receive(owner)
        await receive(removed)
        await call(core_services.member_remove)(workspace_id=workspace.pk, by=alice, user_id=bob.pk)
        last = await receive(removed)
        assert (last["event"], last["data"]["user"]) == ("member.removed", bob.pk)
        assert await removed.receive_output(timeout=TIMEOUT) == {
            "type": "websocket.close",
            "code": 4403,
        }
        heard = await receive(owner)
        assert heard["event"] == "member.removed"
        await ping_answers(owner)  # the owner's socket stays
        await owner.disconnect()

    run(scenario)


def test_viewing_a_tab_clears_its_unread_for_this_member_only(workspace, alice, bob):
    tab = TabFactory(task=TaskFactory(workspace=workspace), state=TabState.READY)
    assert sorted(services.tab_mark_unread(tab_id=tab.pk)) == sorted([alice.pk, bob.pk])
    headers = token_header(alice)

    async def scenario() -> None:
        ws = await open_socket(url(workspace), headers)
        snapshot = await receive(ws)
        assert [t["unread"] for t in snapshot["tabs"]] == [True]
        await ws.send_json_to({"type": "view", "tab": str(tab.pk)})
        cleared = await receive(ws)
        assert (cleared["event"], cleared["data"]) == (
            "tab.user_state",
            {"tab": str(tab.pk), "unread": False},
        )
        await ws.send_json_to({"type": "view", "tab": str(uuid.uuid4())})
        assert (await receive(ws))["code"] == "unknown_tab"
        await ws.disconnect()

    run(scenario)
    states = dict(TabUserState.objects.filter(tab=tab).values_list("user", "unread"))
    assert states == {alice.pk: False, bob.pk: True}
