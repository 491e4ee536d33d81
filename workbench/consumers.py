"""The workbench websocket: members get a snapshot, then every event of their workspace."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from workbench import fanout, metrics, selectors
from workbench.events import event_frame
from workbench.models import Workspace

MAX_FRAME_BYTES = 64 * 1024
CLOSE_FORBIDDEN = 4403


@database_sync_to_async
def _snapshot(workspace_id: int) -> dict[str, Any]:
    workspace = Workspace.objects.get(pk=workspace_id)
    return selectors.workbench_snapshot(workspace=workspace)


@database_sync_to_async
def _current_seq(workspace_id: int) -> int:
    return Workspace.objects.filter(pk=workspace_id).values_list("event_seq", flat=True).get()


@database_sync_to_async
def _events_after(workspace_id: int, seq: int) -> list[dict] | None:
    current = Workspace.objects.filter(pk=workspace_id).values_list("event_seq", flat=True).get()
    if seq > current:  # never issued here (say, a restored database): the client starts over
        return None
    events = selectors.events_after(workspace_id=workspace_id, seq=seq)
    return None if events is None else [dict(event_frame(event)) for event in events]


def _seq_param(scope: dict) -> int | None:
    """`?seq=N` on the URL: the last seq a reconnecting client applied."""
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("seq") or []
    return int(values[0]) if values and values[0].isdigit() else None


class WorkspaceConsumer(AsyncJsonWebsocketConsumer):
    """One member's socket on one workspace. Events reach it through the process's fan-out
    hub (workbench.fanout), not through a group membership of its own."""

    # Frames the hub delivered before the snapshot was sent; None once live.
    held: list[str] | None = None

    async def connect(self) -> None:
        self.workspace_id = int(self.scope["url_route"]["kwargs"]["workspace_id"])
        user = self.scope.get("user")
        allowed = user is not None and await database_sync_to_async(selectors.workspace_is_member)(
            workspace_id=self.workspace_id, user=user
        )
        if not allowed:
            # Accept, then close: a close code is only visible on an accepted socket.
            await self.accept()
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.hub = fanout.hub_for(self.channel_layer)
        self.held = []
        metrics.websocket_opened()
        # Join before the snapshot: nothing committed after it can be missed.
        await self.hub.join(self.workspace_id, self)
        await self.accept()
        since = _seq_param(self.scope)
        if since is None:
            await self.send_json(await _snapshot(self.workspace_id))
        else:  # a reconnecting client: only what it missed (a snapshot if that is too old)
            await self._resume({"seq": since})
        await self._go_live()

    async def deliver(self, text: str) -> None:
        """An event frame from the hub (JSON encoded once for every socket)."""
        if self.held is not None:
            self.held.append(text)
            return
        await self.base_send({"type": "websocket.send", "text": text})

    async def _go_live(self) -> None:
        # Send what arrived during the snapshot, in order; events the hub delivers while
        # these go out are held too, so the loop ends only with nothing left.
        while self.held:
            text = self.held.pop(0)
            await self.base_send({"type": "websocket.send", "text": text})
        self.held = None

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "hub"):
            metrics.websocket_closed()
            await self.hub.leave(self.workspace_id, self)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not hasattr(self, "hub"):
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
        handlers = {"resume": self._resume, "ping": self._ping}
        handler = handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            await self._error("unknown_type", "expected a frame of type resume or ping")
            return
        await handler(content)

    async def _ping(self, content: dict) -> None:
        # The current seq lets a client notice a lost *last* event (no later one shows the gap).
        await self.send_json({"type": "pong", "seq": await _current_seq(self.workspace_id)})

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
        frames = await _events_after(self.workspace_id, seq)
        if frames is None:  # too old (pruned) or too many: start over from a snapshot
            await self.send_json(await _snapshot(self.workspace_id))
            return
        for frame in frames:
            await self.send_json(frame)

    async def _error(self, code: str, message: str) -> None:
        await self.send_json({"type": "error", "code": code, "message": message})
