"""The client-side workbench, built from a snapshot plus events (docs/websocket.md), and the
ordering rules a socket applies to its frames. No I/O here: the async `WorkbenchClient` and
the sync stream behind the `Workbench` helpers both feed frames to a `StreamState`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

if TYPE_CHECKING:
    from collections.abc import MutableMapping

__all__ = ["APPLIED_KEPT", "MESSAGES_KEPT_PER_TAB", "Received", "StreamState", "WorkbenchModel"]

# How many applied event frames `WorkbenchModel.applied` keeps (the newest): enough to look
# back at what just happened, bounded so a long-running process does not grow.
APPLIED_KEPT = 1000
# How many transcript messages the model keeps per tab (the newest); the REST transcript
# (`Workbench.messages`) has them all.
MESSAGES_KEPT_PER_TAB = 500


@dataclass
class WorkbenchModel:
    """The client-side copy of a workbench: members, tasks with their sandbox, open tabs with
    this user's own unread and draft, and the transcript messages seen since connecting."""

    seq: int = -1
    me: int | None = None  # the user this socket belongs to: `unread` and `draft` are theirs
    workspace: dict[str, Any] = field(default_factory=dict)
    members: dict[int, dict[str, Any]] = field(default_factory=dict)
    tasks: dict[int, dict[str, Any]] = field(default_factory=dict)
    tabs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Per tab id, its messages by id (message.created / message.updated, newest version).
    messages: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)
    # The newest applied event frames, oldest first (bounded: APPLIED_KEPT).
    applied: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=APPLIED_KEPT))
    # The REST path of the workbench's next page (the snapshot is its first); None once all
    # of it is loaded (WorkbenchClient.load_more).
    next: str | None = None

    def load_snapshot(self, frame: dict[str, Any]) -> None:
        self.seq = frame["seq"]
        self.me = frame["me"]
        self.workspace = frame["workspace"]
        self.members = {member["user"]: member for member in frame["members"]}
        self.tasks = {task["id"]: task for task in frame["tasks"]}
        self.tabs = {tab["id"]: tab for tab in frame["tabs"]}
        self.next = frame.get("next")
        # Transcripts of tabs that left while we were away go; the others stay (a snapshot
        # carries no messages, and the ones held are still true).
        self.messages = {k: v for k, v in self.messages.items() if k in self.tabs}

    def load_page(self, path: str, page: dict[str, Any]) -> bool:
        """A later page (the answer to `GET next`), kept by `version` like an event; False
        if a fresh snapshot replaced the workbench meanwhile (its `next` is another)."""
        if path != self.next:
            return False
        for task in page["tasks"]:
            _upsert(self.tasks, task["id"], task, drop=task["archived"])
        for tab in page["tabs"]:
            _upsert(self.tabs, tab["id"], tab, drop=tab["state"] == "closed")
        self.next = page.get("next")
        return True

    def transcript(self, tab_id: str) -> list[dict[str, Any]]:
        """The messages of `tab_id` seen on this socket, in order."""
        return [m for _, m in sorted(self.messages.get(tab_id, {}).items())]

    def apply(self, frame: dict[str, Any]) -> None:
        """Apply the event that directly follows `seq` (callers check ordering)."""
        name, data = frame["event"], frame["data"]
        if name == "tab.updated":
            current = self.tabs.get(data["id"]) or {"unread": False, "draft": ""}
            # What is my own (unread, draft) comes from tab.user_state, not from here.
            mine = {"unread": current["unread"], "draft": current["draft"]}
            closed = data["state"] == "closed"
            _upsert(self.tabs, data["id"], {**data, **mine}, drop=closed)
            if closed:
                self.messages.pop(data["id"], None)
        elif name in ("message.created", "message.updated"):
            transcript = self.messages.setdefault(data["tab"], {})
            _upsert(transcript, data["id"], data, drop=False)
            while len(transcript) > MESSAGES_KEPT_PER_TAB:
                del transcript[min(transcript)]
        elif name == "tab.user_state":
            tab = self.tabs.get(data["tab"])
            if tab is not None:
                tab.update({k: v for k, v in data.items() if k != "tab"})
        elif name == "member.updated":
            self.members[data["user"]] = data
            if data["user"] == self.me:
                self.workspace = {**self.workspace, "role": data["role"]}
        elif name == "member.removed":
            self.members.pop(data["user"], None)
        elif name == "task.updated":
            _upsert(self.tasks, data["id"], data, drop=data["archived"])
            if data["archived"]:
                gone = [k for k, t in self.tabs.items() if t["task"] == data["id"]]
                for tab_id in gone:
                    del self.tabs[tab_id]
                    self.messages.pop(tab_id, None)
        elif name == "sandbox.updated":
            task = self.tasks.get(data["task"])
            shown: dict[str, Any] | None = task.get("sandbox") if task else None
            # A task shows its live sandbox, else its latest attempt: the higher id wins.
            if task is not None and (
                shown is None
                or data["id"] > shown["id"]
                or (data["id"] == shown["id"] and data["version"] >= shown["version"])
            ):
                task["sandbox"] = data
        elif name == "provisioning.step":
            task = self.tasks.get(data["task"])
            sandbox = task.get("sandbox") if task else None
            if sandbox is not None and sandbox["id"] == data["sandbox"]:
                step = {k: v for k, v in data.items() if k != "task"}
                steps = [s for s in sandbox["steps"] if s["id"] != step["id"]]
                sandbox["steps"] = sorted([*steps, step], key=lambda s: s["id"])
        self.seq = frame["seq"]
        self.applied.append(frame)


def _upsert(items: MutableMapping[Any, Any], key: Any, data: dict[str, Any], *, drop: bool) -> None:
    current = items.get(key)
    if current is not None and current.get("version", 0) > data.get("version", 0):
        return  # already newer (a snapshot taken after the event)
    if drop:
        items.pop(key, None)
    else:
        items[key] = data


class Received(NamedTuple):
    """What one frame did: `kind` is `snapshot`, `event` (applied: `frame` is it) or
    `ignored`; `reply` is a frame to send back (a resume), if any."""

    kind: Literal["snapshot", "event", "ignored"]
    frame: dict[str, Any]
    reply: dict[str, Any] | None = None


@dataclass
class StreamState:
    """The ordering rules of docs/websocket.md ("Applying events") over one `model`:
    duplicates dropped, a gap answered by one resume, a lost last event seen in `pong`."""

    model: WorkbenchModel = field(default_factory=WorkbenchModel)
    resumes: int = 0
    # The seq a resume was sent (or a reconnect asked) from: one resume per gap.
    resuming_from: int | None = None

    def connect_url(self, url: str) -> str:
        """The URL to (re)connect to: after the first snapshot, ask only for what was missed."""
        if self.model.seq < 0:
            self.resuming_from = None
            return url
        self.resuming_from = self.model.seq  # the server replays from it: no resume needed
        return url + ("&" if "?" in url else "?") + f"seq={self.model.seq}"

    def receive(self, frame: dict[str, Any]) -> Received:
        kind = frame.get("type")
        if kind == "snapshot":
            self.model.load_snapshot(frame)
            self.resuming_from = None
            return Received("snapshot", frame)
        if kind == "event":
            seq = frame["seq"]
            if seq <= self.model.seq:
                return Received("ignored", frame)  # a duplicate, or covered by the snapshot
            if seq > self.model.seq + 1:
                return Received("ignored", frame, self._resume())  # a gap: missing ones first
            self.model.apply(frame)
            self.resuming_from = None
            return Received("event", frame)
        if kind == "pong" and frame.get("seq", -1) > self.model.seq:
            return Received("ignored", frame, self._resume())  # our last event was lost
        return Received("ignored", frame)

    def _resume(self) -> dict[str, Any] | None:
        if self.resuming_from == self.model.seq:
            return None  # one resume per gap: its replay fills it
        self.resuming_from = self.model.seq
        self.resumes += 1
        return {"type": "resume", "seq": self.model.seq}
