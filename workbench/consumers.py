"""The workbench websocket: members get a snapshot, then every event of their workspace."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from core import selectors as core_selectors
from workbench import fanout, metrics, presence, services, snapshots, socket_quota
from workbench.models import TabState, WorkbenchTab
from workbench.socket_quota import Admission

MAX_FRAME_BYTES = 64 * 1024
CLOSE_FORBIDDEN = 4403
MAX_ID = 2**63 - 1  # BigAutoField's largest primary key
CLOSE_TOO_MANY = socket_quota.CLOSE_TOO_MANY


@database_sync_to_async
def _open_tab_in(workspace_id: int, tab_id: str) -> bool:
    try:
        tab = uuid.UUID(tab_id)
    except ValueError:
        return False
    return (
        WorkbenchTab.objects.filter(pk=tab, workspace_id=workspace_id)
        .exclude(state=TabState.CLOSED)
        .exists()
    )


@database_sync_to_async
def _mark_read(tab_id: str, user_id: int) -> None:
    services.tab_mark_read(tab_id=uuid.UUID(tab_id), user_id=user_id)


# The largest seq a client can hold: the event log's column is a signed 64-bit integer.
_MAX_SEQ = 2**63 - 1


def _seq_param(scope: dict) -> int | None:
    """`?seq=N` on the URL: the last seq a reconnecting client applied. Anything but ASCII
    digits within the log's range ('²' passes str.isdigit but not int) gets a snapshot."""
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("seq") or []
    # At most 19 digits: int() of 4,300 or more raises, and the log stops at 2**63 - 1.
    if not values or len(values[0]) > 19 or not (values[0].isascii() and values[0].isdigit()):
        return None
    seq = int(values[0])
    return seq if seq <= _MAX_SEQ else None


class FrameBudget:
    """A token bucket of client frames per socket: WORKBENCH_SOCKET_FRAME_RATE a second,
    bursts of WORKBENCH_SOCKET_FRAME_BURST. A frame may cost a query on the consumers'
    shared thread (a view checks the tab; pings share at most four seq reads a second per
    workspace, on the hub's threads), so one socket's flood would slow every other socket's
    connect; past the budget a frame is dropped unread. (Ten lines in-process: a library
    would add a dependency and nothing this needs.)"""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self.tokens, self.at = float(burst), time.monotonic()
        self.warned_at = float("-inf")

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def warn(self) -> bool:
        """Whether to tell the client it is over budget: at most once a second."""
        now = time.monotonic()
        if now - self.warned_at < 1:
            return False
        self.warned_at = now
        return True


class WorkspaceConsumer(AsyncJsonWebsocketConsumer):
    """One member's socket on one workspace. Events reach it through the process's fan-out
    hub (workbench.fanout), not through a group membership of its own."""

    # Frames the hub delivered before the snapshot was sent; None once live.
    held: list[str] | None = None
    # Closed because its user is no longer a member: nothing more is sent.
    gone = False

    async def connect(self) -> None:
        self.workspace_id = int(self.scope["url_route"]["kwargs"]["workspace_id"])
        user = self.scope.get("user")
        # An id past the database's integer range names no workspace (and its query would
        # raise OverflowError): the ordinary refusal.
        allowed = (
            user is not None
            and self.workspace_id <= MAX_ID
            and await database_sync_to_async(core_selectors.workspace_is_member)(
                workspace_id=self.workspace_id, user=user
            )
        )
        if not allowed:
            # Accept, then close: a close code is only visible on an accepted socket.
            await self.accept()
            await self.close(code=CLOSE_FORBIDDEN)
            return
        # Counted across every Daphne before anything costly (the snapshot) is done for it.
        self.user_id = user.pk
        self.socket_id = uuid.uuid4().hex
        admission = await socket_quota.ledger().admit(self.user_id, self.socket_id)
        if admission is not Admission.ADMITTED:
            await self.accept()
            await self.close(code=CLOSE_TOO_MANY)
            return
        self.hub = fanout.hub_for(self.channel_layer)
        self.viewing = presence.ViewerClaims(self.user_id, self.socket_id)
        self.budget = FrameBudget(
            settings.WORKBENCH_SOCKET_FRAME_RATE, settings.WORKBENCH_SOCKET_FRAME_BURST
        )
        self.held = []
        metrics.websocket_opened()
        # Join before the snapshot: nothing committed after it can be missed.
        await self.hub.join(self.workspace_id, self)
        await self.accept()
        since = _seq_param(self.scope)
        if since is None:
            await self._send_snapshot()
        else:  # a reconnecting client: only what it missed (a snapshot if that is too old)
            await self._resume({"seq": since})
        await self._go_live()

    async def deliver(self, text: str) -> None:
        """An event frame from the hub (JSON encoded once for every socket)."""
        if self.gone:
            return
        if self.held is not None:
            self.held.append(text)
            return
        await self.base_send({"type": "websocket.send", "text": text})

    async def revoked(self) -> None:
        """Its user was removed from the workspace (a `member.removed` event): close now,
        not at their next reconnect."""
        await self._refuse()

    async def _refuse(self) -> None:
        self.gone = True
        self.held = None
        await self.close(code=CLOSE_FORBIDDEN)

    async def _go_live(self) -> None:
        # Send what arrived during the snapshot, in order; events the hub delivers while
        # these go out are held too, so the loop ends only with nothing left.
        while self.held and not self.gone:
            text = self.held.pop(0)
            await self.base_send({"type": "websocket.send", "text": text})
        self.held = None

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "hub"):
            metrics.websocket_closed()
            await self.hub.leave(self.workspace_id, self)
            await self.viewing.close()
        if hasattr(self, "socket_id"):
            await socket_quota.ledger().release(self.socket_id)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not hasattr(self, "hub") or self.gone:
            return
        if not self.budget.take():
            if self.budget.warn():  # not once per dropped frame: that would be a flood too
                await self._error(
                    "too_many_frames",
                    f"at most {settings.WORKBENCH_SOCKET_FRAME_RATE:g} frames a second; "
                    "frames past that are dropped",
                )
            return
        raw = text_data.encode("utf-8") if text_data is not None else (bytes_data or b"")
        if len(raw) > MAX_FRAME_BYTES:
            await self._error("frame_too_large", f"frames are limited to {MAX_FRAME_BYTES} bytes")
            return
        try:
            content = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError):  # RecursionError: nested too deeply
            await self._error("malformed", "frames must be JSON objects")
            return
        await self.receive_json(content)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        handlers = {"resume": self._resume, "ping": self._ping, "view": self._view}
        handler = handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            await self._error("unknown_type", "expected a frame of type resume, ping or view")
            return
        await handler(content)

    async def _ping(self, content: dict) -> None:
        await self.viewing.renew()
        # The current seq lets a client notice a lost *last* event (no later one shows the gap).
        # Read from the database (a lost broadcast never reaches the hub), at most ~0.5 s old
        # and shared by every ping of the workspace in this process (fanout.PongSeqs).
        await self.send_json({"type": "pong", "seq": await self.hub.pong_seq(self.workspace_id)})

    async def _view(self, content: dict) -> None:
        """`{"type": "view", "tab": id}`: this page shows that tab (null: none, or hidden).
        Viewing clears the tab's unread for this member, and replies there leave it read."""
        tab = content.get("tab")
        if tab is None:
            await self.viewing.view(None)
            return
        if not isinstance(tab, str) or not await _open_tab_in(self.workspace_id, tab):
            await self._error("unknown_tab", "view needs the id of an open tab of this workspace")
            return
        await self.viewing.view(tab)
        await _mark_read(tab, self.user_id)

    async def _resume(self, content: dict) -> None:
        # Hold the hub's events while the answer goes out, so none overtakes it.
        holding = self.held is None
        if holding:
            self.held = []
        try:
            await self._answer_resume(content)
        finally:
            if holding:
                await self._go_live()

    async def _answer_resume(self, content: dict) -> None:
        seq = content.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            await self._error("invalid_seq", "resume needs a non-negative integer seq")
            return
        try:
            frames = await snapshots.events_after_texts(
                workspace_id=self.workspace_id, seq=seq, user_id=self.user_id
            )
        except snapshots.NotMember:
            await self._refuse()
            return
        if self.gone:  # removed while the frames were read: the hub already closed it
            return
        if frames is None:  # too old (pruned) or too many: start over from a snapshot
            await self._send_snapshot()
            return
        for text in frames:
            await self.send(text_data=text)

    async def _send_snapshot(self) -> None:
        # Built in the user's turn on the snapshot pool (workbench/snapshots.py): one user's
        # many connects wait behind each other, not in front of other users'.
        try:
            text = await snapshots.snapshot_text(
                workspace_id=self.workspace_id, user_id=self.user_id
            )
        except snapshots.NotMember:  # removed after the connect's own check
            await self._refuse()
            return
        if not self.gone:
            await self.send(text_data=text)

    async def _error(self, code: str, message: str) -> None:
        await self.send_json({"type": "error", "code": code, "message": message})
