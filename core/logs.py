"""Logs an operator can follow: every line says which request, workspace, task, sandbox, tab
and Celery task it is about, so one grep for a tab's id finds its whole life across Daphne
and the workers. Readable text by default, JSON lines with WORKBENCH_LOG_FORMAT=json.

The ids live in a context variable: a request binds its own id (and, as the views read them,
its workspace, task and tab), a Celery task its id and the request that sent it (a message
header), and the services bind the rows they load. Threads and asyncio tasks each see their
own copy, so one request's ids never leak into another's lines.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

# In the order a line shows them.
FIELDS = ("request", "celery_task", "workspace", "task", "sandbox", "tab")

_ids: ContextVar[dict[str, str]] = ContextVar("workbench_log_ids", default={})  # noqa: B039

# A client's X-Request-ID is kept only when it is a plain token (it lands in every line).
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")


def ids() -> dict[str, str]:
    """The ids the current request or Celery task has bound."""
    return dict(_ids.get())


def start(**values: object) -> None:
    """Begin a fresh context with these ids (a Celery task in a worker process that runs
    one task after another)."""
    _ids.set({k: str(v) for k, v in values.items() if v is not None})


def bind(**values: object) -> None:
    """Add ids to the current context, for the rest of it; None unbinds one (a tab without a
    sandbox must not keep the sandbox an earlier row bound)."""
    bound = {**_ids.get(), **{k: str(v) for k, v in values.items() if v is not None}}
    for name in [k for k, v in values.items() if v is None]:
        bound.pop(name, None)
    _ids.set(bound)


@contextmanager
def scope(**values: object) -> Iterator[None]:
    """Ids for the duration of a block (a request, a Celery task), then as before."""
    token = _ids.set({k: str(v) for k, v in values.items() if v is not None})
    try:
        yield
    finally:
        _ids.reset(token)


def request_id(offered: str | None) -> str:
    """The request's id: the client's X-Request-ID when it is a plain token, else a new one."""
    if offered and _REQUEST_ID.fullmatch(offered):
        return offered
    return uuid.uuid4().hex


class IdsFilter(logging.Filter):
    """Puts the bound ids on every record (as `record.ids`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.ids = _ids.get()
        return True


class TextFormatter(logging.Formatter):
    """`time level logger message [tab=… task=…]`: only the ids that are bound."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        bound: dict[str, str] = getattr(record, "ids", {})
        shown = " ".join(f"{name}={bound[name]}" for name in FIELDS if name in bound)
        if not shown:
            return line
        first, newline, rest = line.partition("\n")  # a traceback stays below its line
        return f"{first} [{shown}]{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, the bound ids, and any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "ids", {}),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)
