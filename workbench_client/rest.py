"""The REST API (DESIGN's table, /api/docs/) as `Workbench` (sync) and `AsyncWorkbench`.

Both build the same `Op`s (method, path, body, headers, how to read the answer) and read
answers the same way (`read`): an error status raises the exception for it (errors.py), a
list follows its `Link: <...>; rel="next"` pages lazily. Only the sending differs.

    wb = Workbench("http://127.0.0.1:8000")
    wb.login("demo", "demo")
    task = wb.create_task(1, "hello")
    tab = wb.open_tab(task["id"], wait="ready")
    reply = wb.send(tab["id"], "hi")
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import httpx

from workbench_client import __version__
from workbench_client.errors import (
    ConnectionFailed,
    RateLimited,
    ServiceUnavailable,
    WaitTimeout,
    WorkbenchAPIError,
    error_for_status,
)
from workbench_client.stream import AsyncStream, SyncStream, ws_url
from workbench_client.waiters import ReplyWaiter, TabWaiter, is_progress_of, tab_event_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from workbench_client.payloads import (
        Agent,
        Member,
        Message,
        Snapshot,
        Tab,
        Task,
        TaskStarted,
        WorkbenchPage,
        Workspace,
    )

__all__ = ["AsyncWorkbench", "ListOp", "Op", "Workbench", "next_link", "read"]

T = TypeVar("T")
# Retried by the client itself: a 429 or 503 that says to come back soon, at most this often.
MAX_RETRIES = 2
MAX_RETRY_AFTER = 10.0


@dataclass(frozen=True)
class Op(Generic[T]):
    """One request and how to read its answer's body."""

    method: str
    path: str
    json: Any = None
    params: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    empty: bool = False  # 204: no body

    def kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {"headers": self.headers}
        if self.json is not None:
            out["json"] = self.json
        if self.params:
            out["params"] = {k: _param(v) for k, v in self.params.items() if v is not None}
        return out


@dataclass(frozen=True)
class ListOp(Generic[T]):
    """A cursor-paginated list: `items` takes a page's body to its items."""

    path: str
    params: dict[str, Any] | None = None
    results_key: str | None = None  # the transcript's page is {"results": [...], ...}

    def first(self) -> Op[Any]:
        return Op("GET", self.path, params=self.params)

    def items(self, body: Any) -> list[T]:
        return list(body[self.results_key] if self.results_key else body)


def _param(value: Any) -> Any:
    return ("true" if value else "false") if isinstance(value, bool) else value


def read(response: httpx.Response, *, empty: bool = False) -> Any:
    """The answer's JSON body, or the exception for its error status."""
    if response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            body = None
        raise error_for_status(response.status_code, body, dict(response.headers))
    if empty or response.status_code == 204 or not response.content:
        return None
    return response.json()


def next_link(response: httpx.Response) -> str | None:
    """The `Link` header's rel="next" URL, if any (httpx parses RFC 8288 links)."""
    link = response.links.get("next")
    return link.get("url") if link else None


def _retry_delay(exc: WorkbenchAPIError, attempt: int) -> float | None:
    """Seconds to wait before sending again, or None to give up. Only 429 and 503 (nothing
    was changed, the server says so) are retried, for any method."""
    if attempt >= MAX_RETRIES or not isinstance(exc, RateLimited | ServiceUnavailable):
        return None
    delay = exc.retry_after
    if delay is None or delay > MAX_RETRY_AFTER:
        return None
    return delay


# -- The operations: one Op per row of DESIGN's REST table ----------------------------------


def _body(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


class _Ops:
    """Builds the request of every operation; both clients send them."""

    @staticmethod
    def token(username: str, password: str) -> Op[dict[str, str]]:
        return Op("POST", "/api/auth/token/", {"username": username, "password": password})

    @staticmethod
    def workspaces(page_size: int | None = None) -> ListOp[Workspace]:
        return ListOp("/api/workspaces/", {"page_size": page_size})

    @staticmethod
    def create_workspace(name: str) -> Op[Workspace]:
        return Op("POST", "/api/workspaces/", {"name": name})

    @staticmethod
    def members(workspace_id: int) -> ListOp[Member]:
        return ListOp(f"/api/workspaces/{workspace_id}/members/")

    @staticmethod
    def add_member(
        workspace_id: int, username: str | None, email: str | None, role: str | None
    ) -> Op[Member]:
        body = _body(username=username, email=email, role=role)
        return Op("POST", f"/api/workspaces/{workspace_id}/members/", body)

    @staticmethod
    def update_member(workspace_id: int, user_id: int, role: str) -> Op[Member]:
        path = f"/api/workspaces/{workspace_id}/members/{user_id}/"
        return Op("PATCH", path, {"role": role})

    @staticmethod
    def remove_member(workspace_id: int, user_id: int) -> Op[None]:
        return Op("DELETE", f"/api/workspaces/{workspace_id}/members/{user_id}/", empty=True)

    @staticmethod
    def tasks(workspace_id: int, include_archived: bool) -> ListOp[Task]:
        params = {"include_archived": include_archived or None}
        return ListOp(f"/api/workspaces/{workspace_id}/tasks/", params)

    @staticmethod
    def create_task(workspace_id: int, title: str, **fields: Any) -> Op[TaskStarted]:
        return Op("POST", f"/api/workspaces/{workspace_id}/tasks/", _body(title=title, **fields))

    @staticmethod
    def task(task_id: int) -> Op[Task]:
        return Op("GET", f"/api/tasks/{task_id}/")

    @staticmethod
    def update_task(task_id: int, **fields: Any) -> Op[Task]:
        return Op("PATCH", f"/api/tasks/{task_id}/", _body(**fields))

    @staticmethod
    def archive_task(task_id: int) -> Op[Task]:
        return Op("POST", f"/api/tasks/{task_id}/archive/", {})

    @staticmethod
    def tabs(task_id: int, include_closed: bool) -> ListOp[Tab]:
        return ListOp(f"/api/tasks/{task_id}/tabs/", {"include_closed": include_closed or None})

    @staticmethod
    def create_tab(task_id: int, title: str | None, idempotency_key: str | None) -> Op[Tab]:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return Op("POST", f"/api/tasks/{task_id}/tabs/", _body(title=title), headers=headers)

    @staticmethod
    def tab(tab_id: str) -> Op[Tab]:
        return Op("GET", f"/api/tabs/{tab_id}/")

    @staticmethod
    def update_tab(tab_id: str, **fields: Any) -> Op[Tab]:
        return Op("PATCH", f"/api/tabs/{tab_id}/", _body(**fields))

    @staticmethod
    def close_tab(tab_id: str) -> Op[None]:
        return Op("DELETE", f"/api/tabs/{tab_id}/", empty=True)

    @staticmethod
    def retry_tab(tab_id: str) -> Op[Tab]:
        return Op("POST", f"/api/tabs/{tab_id}/retry/", {})

    @staticmethod
    def messages(tab_id: str) -> ListOp[Message]:
        return ListOp(f"/api/tabs/{tab_id}/messages/", results_key="results")

    @staticmethod
    def send_message(tab_id: str, text: str) -> Op[Message]:
        return Op("POST", f"/api/tabs/{tab_id}/messages/", {"text": text})

    @staticmethod
    def cancel(tab_id: str) -> Op[Message]:
        return Op("POST", f"/api/tabs/{tab_id}/cancel/", {})

    @staticmethod
    def agents() -> Op[list[Agent]]:
        return Op("GET", "/api/agents/")

    @staticmethod
    def workbench(workspace_id: int) -> Op[Snapshot]:
        return Op("GET", f"/api/workspaces/{workspace_id}/workbench/")

    @staticmethod
    def workbench_page(next_path: str) -> Op[WorkbenchPage]:
        return Op("GET", next_path)


def _user_agent() -> dict[str, str]:
    return {"User-Agent": f"workbench-client/{__version__}"}


class _Base:
    def __init__(self, base_url: str, token: str | None, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"} if self.token else {}

    def ws_url(self, workspace_id: int) -> str:
        """The websocket URL of a workspace's stream."""
        return ws_url(self.base_url, workspace_id)


class Workbench(_Base):
    """The REST API, synchronously; `open_tab`, `send` and `follow` also use the socket."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, token, timeout)
        self.http = httpx.Client(
            base_url=self.base_url, timeout=timeout, transport=transport, headers=_user_agent()
        )

    def __enter__(self) -> Workbench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # -- sending ------------------------------------------------------------------------

    def _send(self, op: Op[Any], url: str | None = None) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self.http.request(
                    op.method, url or op.path, **{**op.kwargs(), "headers": self._headers(op)}
                )
                read(response, empty=True)  # raises for an error status
                return response
            except WorkbenchAPIError as exc:
                delay = _retry_delay(exc, attempt)
                if delay is None:
                    raise
                attempt += 1
                time.sleep(delay)  # the server asked for it (Retry-After)
            except httpx.TransportError as exc:
                raise ConnectionFailed(f"{op.method} {op.path}: {exc}") from exc

    def _headers(self, op: Op[Any]) -> dict[str, str]:
        return {**self._auth(), **op.headers}

    def call(self, op: Op[T]) -> T:
        """Send one operation; its answer's body (None for a 204)."""
        response = self._send(op)
        result: T = read(response, empty=op.empty)
        return result

    def pages(self, op: ListOp[T]) -> Iterator[list[T]]:
        """Each page of a list, following `Link: rel="next"` until there is none."""
        first = op.first()
        response = self._send(first)
        yield op.items(response.json())
        while url := next_link(response):
            response = self._send(Op("GET", first.path), url)
            yield op.items(response.json())

    def iterate(self, op: ListOp[T]) -> Iterator[T]:
        """Every item of a list, page after page, lazily."""
        for page in self.pages(op):
            yield from page

    # -- the operations -------------------------------------------------------------------

    def login(self, username: str, password: str) -> str:
        """Trade a username and password for the API token (kept for later calls)."""
        self.token = self.call(_Ops.token(username, password))["token"]
        return self.token

    def workspaces(self, *, page_size: int | None = None) -> Iterator[Workspace]:
        return self.iterate(_Ops.workspaces(page_size))

    def create_workspace(self, name: str) -> Workspace:
        return self.call(_Ops.create_workspace(name))

    def members(self, workspace_id: int) -> Iterator[Member]:
        return self.iterate(_Ops.members(workspace_id))

    def add_member(
        self,
        workspace_id: int,
        *,
        username: str | None = None,
        email: str | None = None,
        role: str | None = None,
    ) -> Member:
        return self.call(_Ops.add_member(workspace_id, username, email, role))

    def update_member(self, workspace_id: int, user_id: int, *, role: str) -> Member:
        return self.call(_Ops.update_member(workspace_id, user_id, role))

    def remove_member(self, workspace_id: int, user_id: int) -> None:
        self.call(_Ops.remove_member(workspace_id, user_id))

    def tasks(self, workspace_id: int, *, include_archived: bool = False) -> Iterator[Task]:
        return self.iterate(_Ops.tasks(workspace_id, include_archived))

    def create_task(
        self,
        workspace_id: int,
        title: str,
        *,
        repository: str | None = None,
        branch: str | None = None,
        provider: str | None = None,
        agent: str | None = None,
        prompt: str | None = None,
    ) -> TaskStarted:
        """Create a task; with `prompt`, also its first tab (`first_tab`) with the prompt
        queued there (`first_message`)."""
        return self.call(
            _Ops.create_task(
                workspace_id,
                title,
                repository=repository,
                branch=branch,
                provider=provider,
                agent=agent,
                prompt=prompt,
            )
        )

    def task(self, task_id: int) -> Task:
        return self.call(_Ops.task(task_id))

    def update_task(self, task_id: int, **fields: str) -> Task:
        """Edit title, repository, branch or agent."""
        return self.call(_Ops.update_task(task_id, **fields))

    def archive_task(self, task_id: int) -> Task:
        return self.call(_Ops.archive_task(task_id))

    def tabs(self, task_id: int, *, include_closed: bool = False) -> Iterator[Tab]:
        return self.iterate(_Ops.tabs(task_id, include_closed))

    def create_tab(
        self, task_id: int, *, title: str | None = None, idempotency_key: str | None = None
    ) -> Tab:
        """POST a tab: the placeholder at once (201). A replay with the same key returns
        the same tab."""
        return self.call(_Ops.create_tab(task_id, title, idempotency_key))

    def tab(self, tab_id: str) -> Tab:
        return self.call(_Ops.tab(tab_id))

    def update_tab(self, tab_id: str, **fields: Any) -> Tab:
        """Edit title, model, your draft or your unread."""
        return self.call(_Ops.update_tab(tab_id, **fields))

    def close_tab(self, tab_id: str) -> None:
        self.call(_Ops.close_tab(tab_id))

    def retry_tab(self, tab_id: str) -> Tab:
        return self.call(_Ops.retry_tab(tab_id))

    def messages(self, tab_id: str) -> Iterator[Message]:
        return self.iterate(_Ops.messages(tab_id))

    def send_message(self, tab_id: str, text: str) -> Message:
        """POST a prompt (202): the user message, `queued` until the tab is ready."""
        return self.call(_Ops.send_message(tab_id, text))

    def cancel(self, tab_id: str) -> Message:
        """Stop the running agent turn (the session stays)."""
        return self.call(_Ops.cancel(tab_id))

    def agents(self) -> list[Agent]:
        return self.call(_Ops.agents())

    def workbench(self, workspace_id: int) -> Snapshot:
        """The workbench's first page (what the socket's snapshot holds)."""
        return self.call(_Ops.workbench(workspace_id))

    def workbench_pages(self, workspace_id: int) -> Iterator[WorkbenchPage]:
        """The snapshot, then each later page (by its `next`)."""
        page: WorkbenchPage = self.workbench(workspace_id)
        yield page
        while page["next"]:
            page = self.call(_Ops.workbench_page(page["next"]))
            yield page

    # -- helpers over the socket ----------------------------------------------------------

    @contextlib.contextmanager
    def stream(self, workspace_id: int, *, timeout: float | None = 30.0) -> Iterator[SyncStream]:
        """A workspace's socket, opened (the snapshot read) and closed afterwards."""
        with SyncStream(self.ws_url(workspace_id), token=self.token) as socket:
            socket.open(timeout)
            yield socket

    def open_tab(
        self,
        task_id: int,
        *,
        title: str | None = None,
        wait: Literal["ready"] | None = "ready",
        timeout: float = 120.0,
        idempotency_key: str | None = None,
        on_progress: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> Tab:
        """Open a tab; with `wait="ready"`, return it once ready. Raises TabFailed (its
        `code` the tab's error_code) if it goes to error, WaitTimeout after `timeout`.

        `on_progress(event, data)` sees the provisioning as it goes: the task's sandbox
        (`sandbox.updated`, with its `plan`), each `provisioning.step`, and `tab.updated`.
        """
        key = idempotency_key or uuid.uuid4().hex  # a retried POST opens one tab
        tab = self.create_tab(task_id, title=title, idempotency_key=key)
        if wait is None:
            return tab
        return self.wait_for_tab(tab, timeout=timeout, on_progress=on_progress)

    def wait_for_tab(
        self,
        tab: Tab,
        *,
        timeout: float = 120.0,
        on_progress: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> Tab:
        """Wait until `tab` is ready (see `open_tab`)."""
        deadline = time.monotonic() + timeout
        waiter = TabWaiter(tab["id"])
        with self.stream(tab["workspace"], timeout=timeout) as socket:
            # Read after the socket is open: every later change arrives as an event.
            if done := self._current_tab(waiter, tab["task"], on_progress):
                return done
            for received in socket.frames(deadline):
                if received.kind == "snapshot":  # a reconnect too late to replay
                    if done := self._current_tab(waiter, tab["task"], on_progress):
                        return done
                elif received.kind == "event" and is_progress_of(
                    received.frame, tab["task"], tab["id"]
                ):
                    name, data = received.frame["event"], received.frame["data"]
                    if on_progress is not None:
                        on_progress(name, data)
                    if name == "tab.updated" and (done := waiter.feed(data)):
                        return done
        raise WaitTimeout(f"tab {tab['id']} not ready after {timeout:g}s")

    def _current_tab(
        self,
        waiter: TabWaiter,
        task_id: int,
        on_progress: Callable[[str, dict[str, Any]], None] | None,
    ) -> Tab | None:
        current = self.tab(waiter.tab_id)
        if on_progress is not None:
            on_progress("tab.updated", dict(current))
            sandbox = self.task(task_id)["sandbox"]
            if sandbox is not None:
                on_progress("sandbox.updated", dict(sandbox))
        return waiter.feed(current)

    def send(
        self,
        tab_id: str,
        text: str,
        *,
        wait: bool = True,
        timeout: float = 300.0,
        on_text: Callable[[str], None] | None = None,
    ) -> Message:
        """Send a prompt. With `wait`, return the agent's reply once it ends (`state`
        complete or failed); `on_text(added)` sees the reply grow. Without, the prompt."""
        if not wait:
            return self.send_message(tab_id, text)
        deadline = time.monotonic() + timeout
        tab = self.tab(tab_id)
        with self.stream(tab["workspace"], timeout=timeout) as socket:
            waiter = ReplyWaiter(self.send_message(tab_id, text))
            for received in socket.frames(deadline):
                if received.kind == "snapshot":  # events were lost: read the transcript
                    frames = [m for m in self.messages(tab_id) if m["id"] >= waiter.prompt_id]
                elif received.kind == "event" and received.frame["event"].startswith("message."):
                    frames = [received.frame["data"]]
                else:
                    continue
                for message in frames:
                    done = waiter.feed(message)
                    if on_text is not None and (added := waiter.delta()):
                        on_text(added)
                    if done:
                        return done
        raise WaitTimeout(f"no reply in tab {tab_id} after {timeout:g}s")

    def follow(self, tab_id: str, *, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Yield the tab's events (tab.updated, tab.user_state, message.created/updated)
        as they happen, until it is closed (its last tab.updated) or `timeout` passes (then
        the iteration just ends)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        tab = self.tab(tab_id)
        # WaitTimeout: the time given is up, which ends the iteration.
        with (
            self.stream(tab["workspace"], timeout=timeout) as socket,
            contextlib.suppress(WaitTimeout),
        ):
            for received in socket.frames(deadline):
                if received.kind == "event" and tab_event_of(received.frame, tab_id):
                    yield received.frame
                    data = received.frame["data"]
                    if received.frame["event"] == "tab.updated" and data["state"] == "closed":
                        return


class AsyncWorkbench(_Base):
    """The REST API with asyncio; the same operations and helpers as `Workbench`."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, token, timeout)
        self.http = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, transport=transport, headers=_user_agent()
        )

    async def __aenter__(self) -> AsyncWorkbench:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.http.aclose()

    async def _send(self, op: Op[Any], url: str | None = None) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = await self.http.request(
                    op.method, url or op.path, **{**op.kwargs(), "headers": self._headers(op)}
                )
                read(response, empty=True)
                return response
            except WorkbenchAPIError as exc:
                delay = _retry_delay(exc, attempt)
                if delay is None:
                    raise
                attempt += 1
                await asyncio.sleep(delay)  # the server asked for it (Retry-After)
            except httpx.TransportError as exc:
                raise ConnectionFailed(f"{op.method} {op.path}: {exc}") from exc

    def _headers(self, op: Op[Any]) -> dict[str, str]:
        return {**self._auth(), **op.headers}

    async def call(self, op: Op[T]) -> T:
        response = await self._send(op)
        result: T = read(response, empty=op.empty)
        return result

    async def pages(self, op: ListOp[T]) -> AsyncIterator[list[T]]:
        first = op.first()
        response = await self._send(first)
        yield op.items(response.json())
        while url := next_link(response):
            response = await self._send(Op("GET", first.path), url)
            yield op.items(response.json())

    async def iterate(self, op: ListOp[T]) -> AsyncIterator[T]:
        async for page in self.pages(op):
            for item in page:
                yield item

    async def login(self, username: str, password: str) -> str:
        self.token = (await self.call(_Ops.token(username, password)))["token"]
        return self.token

    def workspaces(self, *, page_size: int | None = None) -> AsyncIterator[Workspace]:
        return self.iterate(_Ops.workspaces(page_size))

    async def create_workspace(self, name: str) -> Workspace:
        return await self.call(_Ops.create_workspace(name))

    def members(self, workspace_id: int) -> AsyncIterator[Member]:
        return self.iterate(_Ops.members(workspace_id))

    async def add_member(
        self,
        workspace_id: int,
        *,
        username: str | None = None,
        email: str | None = None,
        role: str | None = None,
    ) -> Member:
        return await self.call(_Ops.add_member(workspace_id, username, email, role))

    async def update_member(self, workspace_id: int, user_id: int, *, role: str) -> Member:
        return await self.call(_Ops.update_member(workspace_id, user_id, role))

    async def remove_member(self, workspace_id: int, user_id: int) -> None:
        await self.call(_Ops.remove_member(workspace_id, user_id))

    def tasks(self, workspace_id: int, *, include_archived: bool = False) -> AsyncIterator[Task]:
        return self.iterate(_Ops.tasks(workspace_id, include_archived))

    async def create_task(
        self,
        workspace_id: int,
        title: str,
        *,
        repository: str | None = None,
        branch: str | None = None,
        provider: str | None = None,
        agent: str | None = None,
        prompt: str | None = None,
    ) -> TaskStarted:
        return await self.call(
            _Ops.create_task(
                workspace_id,
                title,
                repository=repository,
                branch=branch,
                provider=provider,
                agent=agent,
                prompt=prompt,
            )
        )

    async def task(self, task_id: int) -> Task:
        return await self.call(_Ops.task(task_id))

    async def update_task(self, task_id: int, **fields: str) -> Task:
        return await self.call(_Ops.update_task(task_id, **fields))

    async def archive_task(self, task_id: int) -> Task:
        return await self.call(_Ops.archive_task(task_id))

    def tabs(self, task_id: int, *, include_closed: bool = False) -> AsyncIterator[Tab]:
        return self.iterate(_Ops.tabs(task_id, include_closed))

    async def create_tab(
        self, task_id: int, *, title: str | None = None, idempotency_key: str | None = None
    ) -> Tab:
        return await self.call(_Ops.create_tab(task_id, title, idempotency_key))

    async def tab(self, tab_id: str) -> Tab:
        return await self.call(_Ops.tab(tab_id))

    async def update_tab(self, tab_id: str, **fields: Any) -> Tab:
        return await self.call(_Ops.update_tab(tab_id, **fields))

    async def close_tab(self, tab_id: str) -> None:
        await self.call(_Ops.close_tab(tab_id))

    async def retry_tab(self, tab_id: str) -> Tab:
        return await self.call(_Ops.retry_tab(tab_id))

    def messages(self, tab_id: str) -> AsyncIterator[Message]:
        return self.iterate(_Ops.messages(tab_id))

    async def send_message(self, tab_id: str, text: str) -> Message:
        return await self.call(_Ops.send_message(tab_id, text))

    async def cancel(self, tab_id: str) -> Message:
        return await self.call(_Ops.cancel(tab_id))

    async def agents(self) -> list[Agent]:
        return await self.call(_Ops.agents())

    async def workbench(self, workspace_id: int) -> Snapshot:
        return await self.call(_Ops.workbench(workspace_id))

    async def workbench_pages(self, workspace_id: int) -> AsyncIterator[WorkbenchPage]:
        page: WorkbenchPage = await self.workbench(workspace_id)
        yield page
        while page["next"]:
            page = await self.call(_Ops.workbench_page(page["next"]))
            yield page

    @contextlib.asynccontextmanager
    async def stream(
        self, workspace_id: int, *, timeout: float | None = 30.0
    ) -> AsyncIterator[AsyncStream]:
        socket = AsyncStream(self.ws_url(workspace_id), token=self.token)
        try:
            await socket.open(timeout)
            yield socket
        finally:
            await socket.close()

    async def open_tab(
        self,
        task_id: int,
        *,
        title: str | None = None,
        wait: Literal["ready"] | None = "ready",
        timeout: float = 120.0,
        idempotency_key: str | None = None,
        on_progress: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> Tab:
        key = idempotency_key or uuid.uuid4().hex
        tab = await self.create_tab(task_id, title=title, idempotency_key=key)
        if wait is None:
            return tab
        return await self.wait_for_tab(tab, timeout=timeout, on_progress=on_progress)

    async def wait_for_tab(
        self,
        tab: Tab,
        *,
        timeout: float = 120.0,
        on_progress: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> Tab:
        deadline = time.monotonic() + timeout
        waiter = TabWaiter(tab["id"])
        async with self.stream(tab["workspace"], timeout=timeout) as socket:
            if done := await self._current_tab(waiter, tab["task"], on_progress):
                return done
            frames = socket.frames(deadline)
            async with contextlib.aclosing(frames):
                async for received in frames:
                    if received.kind == "snapshot":
                        if done := await self._current_tab(waiter, tab["task"], on_progress):
                            return done
                    elif received.kind == "event" and is_progress_of(
                        received.frame, tab["task"], tab["id"]
                    ):
                        name, data = received.frame["event"], received.frame["data"]
                        if on_progress is not None:
                            on_progress(name, data)
                        if name == "tab.updated" and (done := waiter.feed(data)):
                            return done
        raise WaitTimeout(f"tab {tab['id']} not ready after {timeout:g}s")

    async def _current_tab(
        self,
        waiter: TabWaiter,
        task_id: int,
        on_progress: Callable[[str, dict[str, Any]], None] | None,
    ) -> Tab | None:
        current = await self.tab(waiter.tab_id)
        if on_progress is not None:
            on_progress("tab.updated", dict(current))
            sandbox = (await self.task(task_id))["sandbox"]
            if sandbox is not None:
                on_progress("sandbox.updated", dict(sandbox))
        return waiter.feed(current)

    async def send(
        self,
        tab_id: str,
        text: str,
        *,
        wait: bool = True,
        timeout: float = 300.0,
        on_text: Callable[[str], None] | None = None,
    ) -> Message:
        if not wait:
            return await self.send_message(tab_id, text)
        deadline = time.monotonic() + timeout
        tab = await self.tab(tab_id)
        async with self.stream(tab["workspace"], timeout=timeout) as socket:
            waiter = ReplyWaiter(await self.send_message(tab_id, text))
            frames = socket.frames(deadline)
            async with contextlib.aclosing(frames):
                async for received in frames:
                    if received.kind == "snapshot":
                        batch = [
                            m async for m in self.messages(tab_id) if m["id"] >= waiter.prompt_id
                        ]
                    elif received.kind == "event" and received.frame["event"].startswith(
                        "message."
                    ):
                        batch = [received.frame["data"]]
                    else:
                        continue
                    for message in batch:
                        done = waiter.feed(message)
                        if on_text is not None and (added := waiter.delta()):
                            on_text(added)
                        if done:
                            return done
        raise WaitTimeout(f"no reply in tab {tab_id} after {timeout:g}s")

    async def follow(
        self, tab_id: str, *, timeout: float | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        deadline = None if timeout is None else time.monotonic() + timeout
        tab = await self.tab(tab_id)
        async with self.stream(tab["workspace"], timeout=timeout) as socket:
            frames = socket.frames(deadline)
            async with contextlib.aclosing(frames):
                with contextlib.suppress(WaitTimeout):  # the time given is up: the end
                    async for received in frames:
                        if received.kind == "event" and tab_event_of(received.frame, tab_id):
                            yield received.frame
                            data = received.frame["data"]
                            if (
                                received.frame["event"] == "tab.updated"
                                and data["state"] == "closed"
                            ):
                                return
