"""The workbench websocket: members get a snapshot, then every event of their workspace."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from workbench import metrics, selectors
from workbench.events import event_frame, group_name
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
    async def dispatch(self, message: dict) -> None:
        # Channels runs close_old_connections in a worker thread before handling *every*
        # message, a thread hop each. Forwarded events never touch the database (and every
        # handler that does goes through database_sync_to_async, which closes them itself):
        # with 1,000 sockets those hops were ~60% of Daphne's CPU per event
        # (docs/benchmarks.md).
        if message["type"] == "workbench.event":
            await self.workbench_event(message)
        else:
            await super().dispatch(message)

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
        self.group = group_name(self.workspace_id)
        metrics.websocket_opened()
        # Join before the snapshot: nothing committed after it can be missed.
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        since = _seq_param(self.scope)
        if since is None:
            await self.send_json(await _snapshot(self.workspace_id))
        else:  # a reconnecting client: only what it missed (a snapshot if that is too old)
            await self._resume({"seq": since})

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            metrics.websocket_closed()
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not hasattr(self, "group"):
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

    async def workbench_event(self, message: dict) -> None:
        await self.send_json(
            {
                "type": "event",
                "seq": message["seq"],
                "event": message["event"],
                "data": message["data"],
            }
        )
