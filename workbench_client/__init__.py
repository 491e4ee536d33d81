"""The Workbench API client: REST (sync and async), the websocket stream, and the `workbench`
command line. Installable on its own: `pip install ./workbench_client`.

    from workbench_client import Workbench

    wb = Workbench("http://127.0.0.1:8000")
    wb.login("demo", "demo")
    task = wb.create_task(1, "hello")
    tab = wb.open_tab(task["id"], wait="ready")
    print(wb.send(tab["id"], "hi")["text"])

- `Workbench` / `AsyncWorkbench` (rest.py): every operation of the REST API, typed results
  (payloads.py), lists as lazy iterators over their `Link` pages, errors as exceptions
  (errors.py), and helpers over the socket: `open_tab(wait="ready")`, `send(wait=True)`,
  `follow(tab)`.
- `WorkbenchClient` (stream.py): a long-lived websocket client keeping a `WorkbenchModel`
  (model.py) of one workspace current, by the rules of docs/websocket.md.
- `workbench` (cli.py): the command line.
"""

from __future__ import annotations

__version__ = "0.1.0"

from workbench_client.errors import (
    AuthenticationError,
    BadRequest,
    Conflict,
    ConnectionFailed,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    PromptFailed,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    TabClosed,
    TabFailed,
    WaitTimeout,
    WorkbenchAPIError,
    WorkbenchError,
)
from workbench_client.model import StreamState, WorkbenchModel
from workbench_client.rest import AsyncWorkbench, Workbench
from workbench_client.stream import AsyncStream, SyncStream, WorkbenchClient

__all__ = [
    "AsyncStream",
    "AsyncWorkbench",
    "AuthenticationError",
    "BadRequest",
    "Conflict",
    "ConnectionFailed",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "PromptFailed",
    "RateLimited",
    "ServerError",
    "ServiceUnavailable",
    "StreamState",
    "SyncStream",
    "TabClosed",
    "TabFailed",
    "WaitTimeout",
    "Workbench",
    "WorkbenchAPIError",
    "WorkbenchClient",
    "WorkbenchError",
    "WorkbenchModel",
    "__version__",
]
