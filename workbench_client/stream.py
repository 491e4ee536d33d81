"""The workbench websocket (docs/websocket.md): one socket per workspace, async and sync.

`AsyncStream` and `SyncStream` keep one socket open: they connect (token header), read the
snapshot, then yield every frame as a `Received` after the ordering rules of `StreamState`
(duplicates dropped, gaps resumed), ping every `heartbeat` seconds, drop a socket that stays
silent, and reconnect with backoff asking only for what was missed (`?seq=N`). A refusal
(close code 4403) is told apart with one REST call: a bad token raises AuthenticationError,
a workspace one is not a member of NotFound (the socket closes both with 4403).

`WorkbenchClient` is the long-lived async client: it keeps `model` current in the background.

    async with WorkbenchClient("ws://127.0.0.1:8000/ws/workspaces/1/", token="...") as client:
        await client.wait_for(lambda m: any(t["state"] == "ready" for t in m.tabs.values()))
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from typing import TYPE_CHECKING, Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI
from websockets.sync.client import ClientConnection as SyncClientConnection
from websockets.sync.client import connect as sync_connect

from workbench_client.errors import (
    ConnectionFailed,
    PermissionDenied,
    WaitTimeout,
    WorkbenchAPIError,
    WorkbenchError,
    error_for_status,
)
from workbench_client.model import Received, StreamState, WorkbenchModel

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Callable, Iterator

logger = logging.getLogger(__name__)

__all__ = ["AsyncStream", "SyncStream", "WorkbenchClient", "http_base", "ws_url"]

REFUSED = 4403  # not a member (or not authenticated): do not reconnect
THROTTLED = 4429  # too many sockets or connects: reconnect, slowly
MAX_FRAME = 2**24


def ws_url(base_url: str, workspace_id: int) -> str:
    """`http://host:8000` -> `ws://host:8000/ws/workspaces/{id}/` (https -> wss)."""
    base = base_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base.removeprefix("https://")
    elif base.startswith("http://"):
        base = "ws://" + base.removeprefix("http://")
    return f"{base}/ws/workspaces/{workspace_id}/"


def http_base(url: str) -> str:
    """The service's HTTP origin for a websocket URL (`ws://h/ws/...` -> `http://h`)."""
    scheme, _, rest = url.partition("://")
    return ("https" if scheme == "wss" else "http") + "://" + rest.split("/", 1)[0]


def _workspace_of(url: str) -> str:
    path = url.split("://", 1)[-1].split("?", 1)[0]
    parts = [p for p in path.split("/") if p]
    return parts[parts.index("workspaces") + 1] if "workspaces" in parts else "?"


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Token {token}"} if token else {}


def _refusal(url: str, response: httpx.Response) -> WorkbenchError:
    """Why a socket was closed with 4403, from a REST read of the same workspace."""
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            body = None
        return error_for_status(response.status_code, body, dict(response.headers))
    # Readable over REST, yet refused on the socket: membership changed in between.
    return PermissionDenied(
        f"the server refused the socket of workspace {_workspace_of(url)} (close code 4403)",
        code="socket_refused",
        status=403,
    )


def _probe_path(url: str) -> str:
    return f"/api/workspaces/{_workspace_of(url)}/members/?page_size=1"


def _handshake_error(exc: InvalidStatus) -> WorkbenchAPIError:
    response = exc.response
    try:
        body = json.loads(response.body or b"")
    except ValueError:
        body = None
    return error_for_status(response.status_code, body, dict(response.headers))


class _Socket:
    """What both streams share: settings, counters, the ordering state, timing rules."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        origin: str | None = None,
        heartbeat: float = 10.0,
        max_backoff: float = 5.0,
        state: StreamState | None = None,
    ) -> None:
        self.url = url
        self.token = token
        self.origin = origin
        self.heartbeat = heartbeat
        self.max_backoff = max_backoff
        self.state = state or StreamState()
        self.connects = 0
        self.close_code: int | None = None
        self.viewing: str | None = None
        self._stopped = False
        self._last_ping = 0.0
        self._last_frame = 0.0

    @property
    def model(self) -> WorkbenchModel:
        return self.state.model

    def _wait_time(self, deadline: float | None) -> float:
        """How long the next read may block: until a ping is due, or the deadline."""
        wait = max(0.0, self._last_ping + self.heartbeat - time.monotonic())
        if deadline is not None:
            wait = min(wait, max(0.0, deadline - time.monotonic()))
        return wait

    def _is_silent(self) -> bool:
        """No frame (not even a pong) for three heartbeats: the connection is dead."""
        return time.monotonic() - self._last_frame > 3 * self.heartbeat

    def _backoff(self, current: float) -> tuple[float, float]:
        """(how long to wait now, the next backoff); several seconds after a 4429."""
        floor = 5.0 if self.close_code == THROTTLED else 0.0
        wait = max(floor, current + random.uniform(0, current / 2))
        return wait, min(current * 2, self.max_backoff)

    @staticmethod
    def _check_deadline(deadline: float | None) -> None:
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeout("timed out waiting on the workbench stream")


class AsyncStream(_Socket):
    """One workspace's socket, read with `async for received in stream.frames()`."""

    ws: ClientConnection | None = None

    async def open(self, timeout: float | None = 30.0) -> Received:
        """Connect and read the snapshot (the first frame); raises why it was refused."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                await self._connect()
                assert self.ws is not None
                raw = await asyncio.wait_for(self.ws.recv(), self._remaining(deadline))
                self._last_frame = time.monotonic()
                return await self._handle(raw)
            except ConnectionClosed as exc:
                await self._after_close(exc)
            except (OSError, TimeoutError) as exc:
                if deadline is not None and time.monotonic() >= deadline:
                    raise WaitTimeout(f"no snapshot from {self.url}") from exc
                logger.info("workbench socket: %s; retrying", exc)
            self._check_deadline(deadline)
            await asyncio.sleep(
                0.5 if deadline is None else min(0.5, self._remaining(deadline) or 0.0)
            )

    @staticmethod
    def _remaining(deadline: float | None) -> float | None:
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    async def frames(self, deadline: float | None = None) -> AsyncGenerator[Received, None]:
        """Every frame after the snapshot, reconnecting as needed, until `deadline`
        (time.monotonic(); WaitTimeout then) or `close()`."""
        backoff = 0.1
        while not self._stopped:
            try:
                if self.ws is None:
                    await self._connect()
                ws = self.ws
                assert ws is not None
                while True:
                    self._check_deadline(deadline)
                    if time.monotonic() >= self._last_ping + self.heartbeat:
                        if self._is_silent():
                            logger.info("workbench socket silent; reconnecting")
                            ws.transport.abort()
                            raise ConnectionClosed(None, None)
                        await self._send(ws, {"type": "ping"})
                    try:
                        raw = await asyncio.wait_for(ws.recv(), self._wait_time(deadline))
                    except TimeoutError:
                        continue
                    self._last_frame = time.monotonic()
                    backoff = 0.1
                    yield await self._handle(raw)
            except ConnectionClosed as exc:
                await self._after_close(exc)
            except WaitTimeout:  # a TimeoutError, hence an OSError: not a dropped socket
                raise
            except OSError as exc:
                self.ws = None
                logger.info("workbench socket dropped (%s); reconnecting", exc)
            if self._stopped:
                return
            wait, backoff = self._backoff(backoff)
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - time.monotonic()))
            await asyncio.sleep(wait)
            self._check_deadline(deadline)

    async def send_view(self, tab_id: str | None) -> None:
        self.viewing = tab_id
        if self.ws is not None:
            with contextlib.suppress(ConnectionClosed):
                await self._send(self.ws, {"type": "view", "tab": tab_id})

    async def close(self) -> None:
        self._stopped = True
        if self.ws is not None:
            await self.ws.close()
            self.ws = None

    async def _connect(self) -> None:
        try:
            self.ws = await connect(
                self.state.connect_url(self.url),
                additional_headers=_headers(self.token),
                origin=self.origin,  # type: ignore[arg-type]
                max_size=MAX_FRAME,
                ping_interval=None,  # the protocol's own ping frames (with `seq` in pongs)
            )
        except InvalidStatus as exc:
            error = _handshake_error(exc)
            if error.status >= 500 or error.status == 429:
                raise OSError(str(error)) from exc  # worth retrying
            raise error from exc
        except InvalidURI as exc:
            raise ConnectionFailed(str(exc)) from exc
        self.connects += 1
        self.close_code = None
        self._last_ping = self._last_frame = time.monotonic()
        if self.viewing is not None:  # a reconnect: say again what this client shows
            await self._send(self.ws, {"type": "view", "tab": self.viewing})

    async def _send(self, ws: ClientConnection, frame: dict[str, Any]) -> None:
        if frame["type"] == "ping":
            self._last_ping = time.monotonic()
        await ws.send(json.dumps(frame))

    async def _handle(self, raw: str | bytes) -> Received:
        received = self.state.receive(json.loads(raw))
        if received.reply is not None and self.ws is not None:
            await self._send(self.ws, received.reply)
        if received.frame.get("type") == "error":
            logger.warning("workbench server error frame: %s", received.frame)
        return received

    async def _after_close(self, exc: ConnectionClosed) -> None:
        self.close_code = exc.rcvd.code if exc.rcvd is not None else None
        self.ws = None
        if self.close_code == REFUSED:
            async with httpx.AsyncClient(
                base_url=http_base(self.url), headers=_headers(self.token), timeout=30
            ) as http:
                raise _refusal(self.url, await http.get(_probe_path(self.url))) from exc
        logger.info("workbench socket closed (%s); reconnecting", self.close_code)


class SyncStream(_Socket):
    """The same socket for synchronous code: `with SyncStream(...) as s: s.open(); for ...`."""

    ws: SyncClientConnection | None = None

    def __enter__(self) -> SyncStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self, timeout: float | None = 30.0) -> Received:
        """Connect and read the snapshot (the first frame); raises why it was refused."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                self._connect()
                assert self.ws is not None
                raw = self.ws.recv(timeout=None if deadline is None else self._left(deadline))
                self._last_frame = time.monotonic()
                return self._handle(raw)
            except ConnectionClosed as exc:
                self._after_close(exc)
            except (OSError, TimeoutError) as exc:
                if deadline is not None and time.monotonic() >= deadline:
                    raise WaitTimeout(f"no snapshot from {self.url}") from exc
                logger.info("workbench socket: %s; retrying", exc)
            self._check_deadline(deadline)
            time.sleep(0.5 if deadline is None else min(0.5, self._left(deadline)))

    @staticmethod
    def _left(deadline: float) -> float:
        return max(0.0, deadline - time.monotonic())

    def frames(self, deadline: float | None = None) -> Iterator[Received]:
        """Every frame after the snapshot, reconnecting as needed, until `deadline`
        (time.monotonic(); WaitTimeout then) or `close()`."""
        backoff = 0.1
        while not self._stopped:
            try:
                if self.ws is None:
                    self._connect()
                ws = self.ws
                assert ws is not None
                while True:
                    self._check_deadline(deadline)
                    if time.monotonic() >= self._last_ping + self.heartbeat:
                        if self._is_silent():
                            logger.info("workbench socket silent; reconnecting")
                            ws.close()  # gives up after close_timeout
                            raise ConnectionClosed(None, None)
                        self._send(ws, {"type": "ping"})
                    try:
                        raw = ws.recv(timeout=self._wait_time(deadline))
                    except TimeoutError:
                        continue
                    self._last_frame = time.monotonic()
                    backoff = 0.1
                    yield self._handle(raw)
            except ConnectionClosed as exc:
                self._after_close(exc)
            except WaitTimeout:  # a TimeoutError, hence an OSError: not a dropped socket
                raise
            except OSError as exc:
                self.ws = None
                logger.info("workbench socket dropped (%s); reconnecting", exc)
            if self._stopped:
                return
            wait, backoff = self._backoff(backoff)
            if deadline is not None:
                wait = min(wait, self._left(deadline))
            time.sleep(wait)
            self._check_deadline(deadline)

    def close(self) -> None:
        self._stopped = True
        if self.ws is not None:
            self.ws.close()
            self.ws = None

    def _connect(self) -> None:
        try:
            # Entered as a context (websockets 17 warns otherwise); `close()` ends it.
            self.ws = contextlib.ExitStack().enter_context(
                sync_connect(
                    self.state.connect_url(self.url),
                    additional_headers=_headers(self.token),
                    origin=self.origin,  # type: ignore[arg-type]
                    max_size=MAX_FRAME,
                    close_timeout=2,
                )
            )
        except InvalidStatus as exc:
            error = _handshake_error(exc)
            if error.status >= 500 or error.status == 429:
                raise OSError(str(error)) from exc
            raise error from exc
        except InvalidURI as exc:
            raise ConnectionFailed(str(exc)) from exc
        self.connects += 1
        self.close_code = None
        self._last_ping = self._last_frame = time.monotonic()
        if self.viewing is not None:
            self._send(self.ws, {"type": "view", "tab": self.viewing})

    def _send(self, ws: SyncClientConnection, frame: dict[str, Any]) -> None:
        if frame["type"] == "ping":
            self._last_ping = time.monotonic()
        ws.send(json.dumps(frame))

    def _handle(self, raw: str | bytes) -> Received:
        received = self.state.receive(json.loads(raw))
        if received.reply is not None and self.ws is not None:
            self._send(self.ws, received.reply)
        return received

    def _after_close(self, exc: ConnectionClosed) -> None:
        self.close_code = exc.rcvd.code if exc.rcvd is not None else None
        self.ws = None
        if self.close_code == REFUSED:
            with httpx.Client(
                base_url=http_base(self.url), headers=_headers(self.token), timeout=30
            ) as http:
                raise _refusal(self.url, http.get(_probe_path(self.url))) from exc
        logger.info("workbench socket closed (%s); reconnecting", self.close_code)


class WorkbenchClient:
    """Connects, keeps `model` current, resumes after gaps and reconnects after drops.

    A refused socket (4403) raises from `start()`: AuthenticationError for a bad token,
    NotFound for a workspace you are not a member of. Removed later, the runner stops and
    `error` holds why (`close_code` is 4403).
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        origin: str | None = None,
        heartbeat: float = 10.0,
        max_backoff: float = 5.0,
    ) -> None:
        self._stream = AsyncStream(
            url, token=token, origin=origin, heartbeat=heartbeat, max_backoff=max_backoff
        )
        self.url = url
        self.token = token
        self.error: BaseException | None = None
        self._changed = asyncio.Condition()
        self._runner: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[Received], None]] = []

    @property
    def model(self) -> WorkbenchModel:
        return self._stream.model

    @property
    def connects(self) -> int:
        return self._stream.connects

    @property
    def resumes(self) -> int:
        return self._stream.state.resumes

    @property
    def close_code(self) -> int | None:
        return self._stream.close_code

    async def __aenter__(self) -> WorkbenchClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self, timeout: float = 10.0) -> None:
        """Connect and wait for the first snapshot, then keep the model current."""
        await self._stream.open(timeout)
        self._runner = asyncio.create_task(self._run())

    async def close(self) -> None:
        await self._stream.close()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._runner

    async def view(self, tab_id: str | None) -> None:
        """Say which tab this client shows (None: none): viewing clears its unread for this
        user, and agent replies there do not mark it unread for them."""
        await self._stream.send_view(tab_id)

    def listen(self, callback: Callable[[Received], None]) -> Callable[[], None]:
        """Call `callback` with every frame handled from now on; returns the unsubscribe."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    async def load_more(self, pages: int | None = 1) -> int:
        """Load the workbench's next `pages` pages over REST (None: all the rest); returns
        how many were applied. The socket keeps them current like the snapshot's."""
        loaded = 0
        async with httpx.AsyncClient(
            base_url=http_base(self.url), headers=_headers(self.token), timeout=30
        ) as http:
            while self.model.next and (pages is None or loaded < pages):
                path = self.model.next
                answer = await http.get(path)
                if answer.status_code >= 400:
                    raise _refusal(self.url, answer)
                async with self._changed:
                    if not self.model.load_page(path, answer.json()):
                        continue  # a fresh snapshot came meanwhile: go on from its `next`
                    loaded += 1
                    self._changed.notify_all()
        return loaded

    async def drop_connection(self) -> None:
        """Cut the socket abruptly (tests of reconnect); the client reconnects by itself."""
        if self._stream.ws is not None:
            self._stream.ws.transport.abort()

    async def wait_for(
        self, predicate: Callable[[WorkbenchModel], Any], timeout: float = 30.0
    ) -> Any:
        """Wait until `predicate(model)` is truthy; returns its value. Raises why the socket
        stopped (e.g. NotFound once removed from the workspace) if it does meanwhile."""

        async def until() -> Any:
            async with self._changed:
                while not (result := predicate(self.model)):
                    if self.error is not None:
                        raise self.error
                    await self._changed.wait()
                return result

        return await asyncio.wait_for(until(), timeout)

    async def _run(self) -> None:
        try:
            async for received in self._stream.frames():
                async with self._changed:
                    for listener in list(self._listeners):
                        listener(received)
                    self._changed.notify_all()
        except WorkbenchError as exc:
            self.error = exc
            async with self._changed:
                self._changed.notify_all()
            raise
