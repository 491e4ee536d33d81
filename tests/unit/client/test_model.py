"""The websocket model and its ordering rules (workbench_client.model), without a socket:
bounded memory, the transcript, duplicates, gaps and resumes."""

from __future__ import annotations

from workbench_client.model import APPLIED_KEPT, MESSAGES_KEPT_PER_TAB, StreamState


def snapshot(seq: int = 0, tabs=()) -> dict:
    return {
        "type": "snapshot",
        "seq": seq,
        "me": 1,
        "workspace": {"id": 1, "role": "owner"},
        "members": [],
        "tasks": [],
        "tabs": list(tabs),
        "next": None,
    }


def tab(version: int = 1, state: str = "ready") -> dict:
    return {"id": "t1", "task": 1, "state": state, "version": version}


def message(seq: int, id: int, version: int, text: str, tab_id: str = "t1") -> dict:
    data = {"id": id, "tab": tab_id, "role": "agent", "text": text, "version": version}
    return {"type": "event", "seq": seq, "event": "message.updated", "data": data}


def test_applied_keeps_only_the_newest_frames():
    state = StreamState()
    state.receive(snapshot())
    for seq in range(1, APPLIED_KEPT + 501):
        state.receive({"type": "event", "seq": seq, "event": "private", "data": {}})
    assert len(state.model.applied) == APPLIED_KEPT
    assert state.model.applied[0]["seq"] == 501
    assert state.model.applied[-1]["seq"] == APPLIED_KEPT + 500
    assert state.model.seq == APPLIED_KEPT + 500


def test_the_transcript_keeps_each_messages_newest_version_in_order():
    state = StreamState()
    state.receive(snapshot(tabs=[{**tab(), "unread": False, "draft": ""}]))
    state.receive(message(1, 5, 1, "he"))
    state.receive(message(2, 4, 1, "prompt"))
    state.receive(message(3, 5, 3, "hello"))
    state.receive(message(4, 5, 2, "hel"))  # an older version, later: ignored
    assert [(m["id"], m["text"]) for m in state.model.transcript("t1")] == [
        (4, "prompt"),
        (5, "hello"),
    ]


def test_a_closed_tab_takes_its_transcript_with_it():
    state = StreamState()
    state.receive(snapshot(tabs=[{**tab(), "unread": False, "draft": ""}]))
    state.receive(message(1, 5, 1, "hi"))
    state.receive({"type": "event", "seq": 2, "event": "tab.updated", "data": tab(2, "closed")})
    assert "t1" not in state.model.tabs
    assert state.model.messages == {}


def test_a_long_transcript_is_bounded():
    state = StreamState()
    state.receive(snapshot())
    for n in range(MESSAGES_KEPT_PER_TAB + 10):
        state.receive(message(n + 1, n + 1, 1, "x"))
    kept = state.model.transcript("t1")
    assert len(kept) == MESSAGES_KEPT_PER_TAB and kept[0]["id"] == 11


def test_duplicates_are_dropped_and_a_gap_asks_for_one_resume():
    state = StreamState()
    state.receive(snapshot(seq=10))
    assert state.receive(message(10, 1, 1, "old")).kind == "ignored"  # covered by the snapshot
    first = state.receive(message(13, 1, 1, "after a gap"))
    again = state.receive(message(14, 1, 2, "still after it"))
    assert first.kind == "ignored" and first.reply == {"type": "resume", "seq": 10}
    assert again.reply is None  # one resume per gap
    assert state.resumes == 1
    assert state.receive(message(11, 1, 1, "replayed")).kind == "event"
    assert state.model.seq == 11


def test_a_pong_ahead_of_us_means_our_last_event_was_lost():
    state = StreamState()
    state.receive(snapshot(seq=4))
    assert state.receive({"type": "pong", "seq": 4}).reply is None
    assert state.receive({"type": "pong", "seq": 5}).reply == {"type": "resume", "seq": 4}


def test_a_reconnect_asks_only_for_what_was_missed():
    state = StreamState()
    assert state.connect_url("ws://h/ws/workspaces/1/") == "ws://h/ws/workspaces/1/"
    state.receive(snapshot(seq=7))
    assert state.connect_url("ws://h/ws/workspaces/1/") == "ws://h/ws/workspaces/1/?seq=7"
    # The server replays from 7 by itself: a gap seen meanwhile needs no resume of ours.
    assert state.receive(message(9, 1, 1, "x")).reply is None
