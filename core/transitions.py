"""One way to change a row's state, for tabs, sandboxes and messages alike: a conditional
update from the source states the row's table declares, bumping its version. A caller that
lost a race (the row moved on) gets 0 and must not record anything."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.db.models import F, QuerySet
from django.utils.timezone import now

# source state -> the states it may move to
Table = Mapping[str, frozenset[str]]


def sources_of(table: Table, target: str) -> list[str]:
    """The states from which `target` may be entered."""
    return [source for source, targets in table.items() if target in targets]


def transition(
    rows: QuerySet[Any],
    *,
    table: Table,
    to: str,
    sources: Iterable[str] | None = None,
    **fields: object,
) -> int:
    """Move those of `rows` in a declared source of `to` (narrowed to `sources`, which must
    be declared) to `to`; returns how many moved. `updated_at` is stamped (a queryset
    update skips auto_now): the reconciler's sweeps time a lost message from it."""
    allowed = set(sources_of(table, to))
    chosen = set(sources) if sources is not None else allowed
    if not chosen <= allowed:
        raise ValueError(f"transitions {sorted(chosen - allowed)} -> {to} are not declared")
    fields.setdefault("updated_at", now())
    return rows.filter(state__in=chosen).update(state=to, version=F("version") + 1, **fields)
