"""Output serializers that build their dict directly, for the shapes written on hot paths.

DRF's generic `to_representation` walks every field of every instance (attribute lookup,
`None` checks, a time zone lookup per datetime). For a tab it cost ~0.8 ms a write, and a
workbench page of 50 tasks with their sandboxes and steps spent most of its build there
(docs/benchmarks.md). A serializer built on `DirectRepresentation` keeps its declared
fields as the schema and overrides `to_representation` to return the same keys in the same
order; `generic_representation` is DRF's path, so a test can hold the two equal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.utils import timezone
from rest_framework import serializers

if TYPE_CHECKING:
    from datetime import datetime, tzinfo


def iso_datetime(value: datetime | None, zone: tzinfo | None = None) -> str | None:
    """DRF's DateTimeField output (ISO 8601 in the active time zone, "Z" for UTC).
    `zone`: the active time zone, when the caller has already read it (one lookup per row
    instead of one per field)."""
    if value is None:
        return None
    text = value.astimezone(zone or timezone.get_current_timezone()).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class DirectRepresentation(serializers.ModelSerializer[Any]):
    """A read-only model serializer whose subclass builds `to_representation` by hand."""

    def generic_representation(self, instance: Any) -> dict[str, Any]:
        """DRF's field-by-field representation (what `to_representation` must equal)."""
        return dict(super().to_representation(instance))
