"""What the helpers wait for, without I/O: fed tabs and messages (from REST reads and socket
events, in any order and with duplicates), each says when its wait is over. The sync and
async clients feed the same waiters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from workbench_client.errors import PromptFailed, TabClosed, TabFailed

if TYPE_CHECKING:
    from workbench_client.payloads import Message, Tab

__all__ = ["PROGRESS_EVENTS", "ReplyWaiter", "TabWaiter", "is_progress_of", "tab_event_of"]

# The events that show a task's provisioning (what `open_tab(on_progress=...)` is given).
PROGRESS_EVENTS = ("sandbox.updated", "provisioning.step", "tab.updated")


class TabWaiter:
    """Until the tab is `ready`: `feed` returns it then, raises TabFailed on `error` and
    TabClosed on `closed`, and None meanwhile. An older version than one seen is ignored."""

    def __init__(self, tab_id: str) -> None:
        self.tab_id = tab_id
        self.version = -1
        self.tab: Tab | None = None

    def feed(self, tab: Tab | dict[str, Any]) -> Tab | None:
        if tab["id"] != self.tab_id or tab["version"] < self.version:
            return None
        self.version = tab["version"]
        self.tab = tab  # type: ignore[assignment]
        if tab["state"] == "ready":
            return tab  # type: ignore[return-value]
        if tab["state"] == "error":
            raise TabFailed(dict(tab))
        if tab["state"] == "closed":
            raise TabClosed(dict(tab))
        return None


class ReplyWaiter:
    """Until the agent's reply to `prompt` ends (`complete` or `failed`): `feed` returns the
    reply then, and raises PromptFailed if the prompt itself fails first. `text` is the
    reply so far; `delta(message)` what it added since the last call."""

    def __init__(self, prompt: Message | dict[str, Any]) -> None:
        self.prompt_id = prompt["id"]
        self.tab_id = prompt["tab"]
        self.reply: dict[str, Any] | None = None
        self.text = ""

    def feed(self, message: Message | dict[str, Any]) -> Message | None:
        if message["tab"] != self.tab_id:
            return None
        if message["id"] == self.prompt_id:
            if message["state"] == "failed":
                raise PromptFailed(dict(message))
            return None
        if message["role"] != "agent" or message.get("reply_to") != self.prompt_id:
            return None
        if self.reply is not None and message["version"] < self.reply["version"]:
            return None
        self.reply = dict(message)
        if message["state"] in ("complete", "failed"):
            return message  # type: ignore[return-value]
        return None

    def delta(self) -> str:
        """What the reply's text added since the last call (all of it if it was rewritten)."""
        current = self.reply["text"] if self.reply else ""
        added = current[len(self.text) :] if current.startswith(self.text) else current
        self.text = current
        return added


def tab_event_of(frame: dict[str, Any], tab_id: str) -> bool:
    """Is this event about `tab_id` (its tab.updated, tab.user_state or a message)?"""
    name, data = frame.get("event", ""), frame.get("data", {})
    if name == "tab.updated":
        return bool(data.get("id") == tab_id)
    return bool(name.startswith(("message.", "tab.user_state")) and data.get("tab") == tab_id)


def is_progress_of(frame: dict[str, Any], task_id: int, tab_id: str) -> bool:
    """Is this event part of the provisioning `open_tab` shows (its task's sandbox, steps,
    or the tab's own state)?"""
    name, data = frame.get("event", ""), frame.get("data", {})
    if name in ("sandbox.updated", "provisioning.step"):
        return bool(data.get("task") == task_id)
    return bool(name == "tab.updated" and data.get("id") == tab_id)
