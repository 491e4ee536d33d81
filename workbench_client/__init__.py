"""A small Python client of the workbench websocket protocol (docs/websocket.md).

It keeps a local model of one workspace's workbench (its members, tasks with their sandbox,
open tabs with this user's own unread and draft),
applies events by `seq` and `version`, detects gaps (including a lost last event, through
the `seq` in each `pong`) and resumes; on a dropped connection it reconnects with backoff
and resumes from the last applied seq.

    async with WorkbenchClient("ws://127.0.0.1:8000/ws/workspaces/1/", token="...") as client:
        await client.wait_for(lambda m: any(t["state"] == "ready" for t in m.tabs.values()))
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

if TYPE_CHECKING:
    from collections.abc import Callable

logger = logging.getLogger(__name__)

__all__ = ["WorkbenchClient", "WorkbenchModel"]


@dataclass
class WorkbenchModel:
    """The client-side copy of a workbench, built from a snapshot plus events."""

    seq: int = -1
    me: int | None = None  # the user this socket belongs to: `unread` and `draft` are theirs
    workspace: dict[str, Any] = field(default_factory=dict)
    members: dict[int, dict[str, Any]] = field(default_factory=dict)
    tasks: dict[int, dict[str, Any]] = field(default_factory=dict)
    tabs: dict[str, dict[str, Any]] = field(default_factory=dict)
    applied: list[dict[str, Any]] = field(default_factory=list)  # every event frame applied
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

    def apply(self, frame: dict[str, Any]) -> None:
        """Apply the event that directly follows `seq` (callers check ordering)."""
        name, data = frame["event"], frame["data"]
        if name == "tab.updated":
            current = self.tabs.get(data["id"]) or {"unread": False, "draft": ""}
            # What is my own (unread, draft) comes from tab.user_state, not from here.
            mine = {"unread": current["unread"], "draft": current["draft"]}
            _upsert(self.tabs, data["id"], {**data, **mine}, drop=data["state"] == "closed")
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
                self.tabs = {k: t for k, t in self.tabs.items() if t["task"] != data["id"]}
        elif name == "sandbox.updated":
            task = self.tasks.get(data["task"])
            current = task.get("sandbox") if task else None
            # A task shows its live sandbox, else its latest attempt: the higher id wins.
            if task is not None and (
                current is None
                or data["id"] > current["id"]
                or (data["id"] == current["id"] and data["version"] >= current["version"])
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


def _upsert(items: dict, key: Any, data: dict[str, Any], *, drop: bool) -> None:
    current = items.get(key)
    if current is not None and current.get("version", 0) > data.get("version", 0):
        return  # already newer (a snapshot taken after the event)
    if drop:
        items.pop(key, None)
    else:
        items[key] = data


class WorkbenchClient:
    """Connects, keeps `model` current, resumes after gaps and reconnects after drops."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        origin: str | None = None,
        heartbeat: float = 10.0,
        max_backoff: float = 5.0,
    ):
        self.url = url
        self.token = token
        self.origin = origin
        self.heartbeat = heartbeat
        self.max_backoff = max_backoff
        self.model = WorkbenchModel()
        self.connects = 0
        self.resumes = 0
        self.close_code: int | None = None
        self._changed = asyncio.Condition()
        self._ws: ClientConnection | None = None
        self._runner: asyncio.Task[None] | None = None
        self._resuming_from: int | None = None
        self._stopped = False
        self._first_snapshot = asyncio.Event()
        self._viewing: str | None = None

    async def __aenter__(self) -> WorkbenchClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self, timeout: float = 10.0) -> None:
        """Connect and wait for the first snapshot."""
        self._runner = asyncio.create_task(self._run())
        waiter = asyncio.create_task(self._first_snapshot.wait())
        done, _ = await asyncio.wait(
            {waiter, self._runner}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if waiter not in done:
            waiter.cancel()
            if self._runner.done():
                self._runner.result()  # raises why it stopped
            raise TimeoutError("no snapshot from the server")

    async def close(self) -> None:
        self._stopped = True
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._runner

    async def view(self, tab_id: str | None) -> None:
        """Say which tab this client shows (None: none): viewing clears its unread for this
        user, and agent replies there do not mark it unread for them."""
        self._viewing = tab_id
        if self._ws is not None:
            await self._ws.send(json.dumps({"type": "view", "tab": tab_id}))

    async def load_more(self, pages: int | None = 1) -> int:
        """Load the workbench's next `pages` pages over REST (None: all the rest); returns
        how many were applied. The socket keeps them current like the snapshot's."""
        scheme, _, rest = self.url.partition("://")
        origin = ("https" if scheme == "wss" else "http") + "://" + rest.split("/", 1)[0]
        headers = {"Authorization": f"Token {self.token}"} if self.token else {}
        loaded = 0
        async with httpx.AsyncClient(base_url=origin, headers=headers, timeout=30) as http:
            while self.model.next and (pages is None or loaded < pages):
                path = self.model.next
                answer = await http.get(path)
                answer.raise_for_status()
                async with self._changed:
                    if not self.model.load_page(path, answer.json()):
                        continue  # a fresh snapshot came meanwhile: go on from its `next`
                    loaded += 1
                    self._changed.notify_all()
        return loaded

    async def drop_connection(self) -> None:
        """Cut the socket abruptly (tests of reconnect); the client reconnects by itself."""
        if self._ws is not None:
            self._ws.transport.abort()

    async def wait_for(
        self, predicate: Callable[[WorkbenchModel], Any], timeout: float = 30.0
    ) -> Any:
        """Wait until `predicate(model)` is truthy; returns its value."""

        async def until() -> Any:
            async with self._changed:
                while not (result := predicate(self.model)):
                    await self._changed.wait()
                return result

        return await asyncio.wait_for(until(), timeout)

    async def _run(self) -> None:
        backoff = 0.1
        while not self._stopped:
            try:
                await self._session()
                backoff = 0.1
            except (ConnectionClosed, OSError) as exc:
                logger.info("workbench socket dropped (%s); reconnecting", exc)
            if self.close_code == 4403:
                raise PermissionError("the server refused this workspace (close code 4403)")
            if self._stopped:
                return
            await asyncio.sleep(backoff + random.uniform(0, backoff / 2))
            backoff = min(backoff * 2, self.max_backoff)

    async def _session(self) -> None:
        headers = {"Authorization": f"Token {self.token}"} if self.token else {}
        url, resuming = self.url, self.model.seq >= 0
        if resuming:  # reconnecting: ask only for what was missed (no full snapshot)
            url += ("&" if "?" in url else "?") + f"seq={self.model.seq}"
        async with connect(
            url, additional_headers=headers, origin=self.origin, max_size=2**24
        ) as ws:
            self._ws = ws
            self.connects += 1
            # The server replays from our seq first: no separate resume for that gap.
            self._resuming_from = self.model.seq if resuming else None
            if self._viewing is not None:  # a reconnect: say again what this client shows
                await ws.send(json.dumps({"type": "view", "tab": self._viewing}))
            pinger = asyncio.create_task(self._ping_forever(ws))
            try:
                async for raw in ws:
                    await self._handle(json.loads(raw))
            finally:
                pinger.cancel()
                self.close_code = ws.close_code
                self._ws = None

    async def _ping_forever(self, ws: ClientConnection) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            await ws.send(json.dumps({"type": "ping"}))

    async def _send_resume(self) -> None:
        if self._ws is None or self._resuming_from == self.model.seq:
            return  # one resume per gap: its replay fills it
        self._resuming_from = self.model.seq
        self.resumes += 1
        await self._ws.send(json.dumps({"type": "resume", "seq": self.model.seq}))

    async def _handle(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        async with self._changed:
            if kind == "snapshot":
                self.model.load_snapshot(frame)
                self._resuming_from = None
                self._first_snapshot.set()
            elif kind == "event":
                seq = frame["seq"]
                if seq <= self.model.seq:
                    return  # a duplicate, or already covered by the snapshot
                if seq > self.model.seq + 1:
                    await self._send_resume()  # a gap: the missing events come first
                    return
                self.model.apply(frame)
                self._resuming_from = None
            elif kind == "pong":
                if frame.get("seq", -1) > self.model.seq:
                    await self._send_resume()
            elif kind == "error":
                logger.warning("workbench server error frame: %s", frame)
            self._changed.notify_all()
