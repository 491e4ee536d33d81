"""The workspace event log: the ordered, gapless truth behind the stream.

`record_event` runs inside the caller's transaction, so the change and its event commit
together; the broadcast (core.publish) runs after commit and is only a hint.
"""

from __future__ import annotations

import json
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, TypedDict, cast

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils.timezone import now

from core.models import Event, Workspace
from core.publish import GroupMessage, publish

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

EventName = Literal[
    "workspace.updated",
    "task.updated",
    "sandbox.updated",
    "provisioning.step",
    "tab.updated",
    "tab.user_state",
    "message.created",
    "message.updated",
    "member.updated",
    "member.removed",
]
EVENT_NAMES: frozenset[str] = frozenset(EventName.__args__)  # type: ignore[attr-defined]


class EventFrame(TypedDict):
    """What a client receives for each change (and what resume replays)."""

    type: Literal["event"]
    seq: int
    event: EventName
    data: dict[str, Any]


def event_frame(event: Event) -> EventFrame:
    return _frame(event.seq, cast("EventName", event.name), event.data)


def group_message(
    workspace_id: int,
    seq: int,
    name: EventName,
    data: dict[str, Any],
    audience: list[int] | None,
    *,
    text: str | None = None,
) -> GroupMessage:
    """What the fan-out hubs get for an event: from its broadcast, or read back from the
    log to fill a gap (the same message either way)."""
    return {
        "type": "workbench.event",
        "workspace": workspace_id,
        "seq": seq,
        "text": text if text is not None else json.dumps(_frame(seq, name, data)),
        "audience": audience,
        # A removed member's sockets close once the removal is sent (docs/websocket.md).
        "revoke": int(data["user"]) if name == "member.removed" else None,
    }


def event_message(event: Event) -> GroupMessage:
    return group_message(
        event.workspace_id, event.seq, cast("EventName", event.name), event.data, event.audience
    )


def _frame(seq: int, name: EventName, data: dict[str, Any]) -> EventFrame:
    return {"type": "event", "seq": seq, "event": name, "data": data}


def _publish_after_commit(
    workspace_id: int,
    seq: int,
    name: EventName,
    data: dict[str, Any],
    audience: list[int] | None = None,
) -> None:
    transaction.on_commit(
        partial(publish_event, workspace_id, seq, name, data, audience), robust=True
    )


def publish_event(
    workspace_id: int,
    seq: int,
    name: EventName,
    data: dict[str, Any],
    audience: list[int] | None = None,
) -> None:
    # Encoded after commit, not while the change holds the workspace lock.
    publish(group_message(workspace_id, seq, name, data, audience))


def record_event(
    workspace_id: int,
    name: EventName,
    data: Mapping[str, object],
    *,
    audience: Sequence[int] | None = None,
) -> int:
    """Append an event to the workspace's log in the current transaction; returns its seq.

    1. Increment the workspace's counter; the UPDATE locks the row until commit, so
       concurrent writers of one workspace take consecutive numbers: the log is gapless.
    2. Insert the Event row with that seq.
    3. Broadcast it after commit (never before: a client could see an uncommitted change).

    `audience`: the users the event is for (a member's private state); every other member
    gets a `private` frame in its place (core.publish.text_for).
    """
    _check_recordable(name)
    text = json.dumps(data, cls=DjangoJSONEncoder)
    plain = json.loads(text)
    users = None if audience is None else sorted(set(audience))
    seq = _append(workspace_id, name, plain, text, users)
    _publish_after_commit(workspace_id, seq, name, plain, users)
    return seq


def _check_recordable(name: str) -> None:
    if name not in EVENT_NAMES:
        raise ValueError(f"unknown event name {name!r}")
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("events must be recorded inside the transaction of the change")


def record_events(
    workspace_id: int, name: EventName, datas: Sequence[Mapping[str, object]]
) -> None:
    """record_event for many changes of one transaction, in three statements whatever their
    number (a hand-off moves every tab waiting on a sandbox at once, under the lock)."""
    _check_recordable(name)
    if not datas:
        return
    plain = [json.loads(json.dumps(data, cls=DjangoJSONEncoder)) for data in datas]
    last = _next_seq(workspace_id, count=len(plain))
    first = last - len(plain) + 1
    Event.objects.bulk_create(
        Event(workspace_id=workspace_id, seq=first + i, name=name, data=data)
        for i, data in enumerate(plain)
    )
    for i, data in enumerate(plain):
        _publish_after_commit(workspace_id, first + i, name, data)


def _append(
    workspace_id: int, name: str, plain: dict[str, Any], text: str, audience: list[int] | None
) -> int:
    """Number the event and insert it; returns its seq.

    On PostgreSQL in one statement (the counter's UPDATE feeding the INSERT): every write of
    a workspace waits for the one holding its lock, and each statement it makes while
    holding it is a round trip (docs/benchmarks.md). SQLite has no UPDATE in a WITH.
    """
    connection = transaction.get_connection()
    if connection.vendor != "postgresql":
        seq = _next_seq(workspace_id)
        Event.objects.create(
            workspace_id=workspace_id, seq=seq, name=name, data=plain, audience=audience
        )
        return seq
    workspaces = connection.ops.quote_name(Workspace._meta.db_table)
    events = connection.ops.quote_name(Event._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH counter AS (UPDATE {workspaces} SET event_seq = event_seq + 1"
            " WHERE id = %s RETURNING event_seq)"
            f" INSERT INTO {events} (workspace_id, seq, name, data, audience, created_at)"
            " SELECT %s, event_seq, %s, %s::jsonb, %s::jsonb, %s FROM counter RETURNING seq",
            [
                workspace_id,
                workspace_id,
                name,
                text,
                None if audience is None else json.dumps(audience),
                now(),
            ],
        )
        row = cursor.fetchone()
    if row is None:
        raise Workspace.DoesNotExist(f"workspace {workspace_id}")
    return int(row[0])


def _next_seq(workspace_id: int, *, count: int = 1) -> int:
    """Add `count` to the workspace's counter and return it: one UPDATE ... RETURNING
    (SQLite 3.35+ and PostgreSQL) instead of an UPDATE and a SELECT."""
    connection = transaction.get_connection()
    table = connection.ops.quote_name(Workspace._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET event_seq = event_seq + %s WHERE id = %s RETURNING event_seq",
            [count, workspace_id],
        )
        row = cursor.fetchone()
    if row is None:
        raise Workspace.DoesNotExist(f"workspace {workspace_id}")
    return int(row[0])
