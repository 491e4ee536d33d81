"""The API's JSON parser: DRF's, with the nesting depth of a document bounded."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import IO

# Every input is a flat object; the bound only has to be far below the recursion limit, so
# that nothing after parsing (validation, error rendering, logging) can recurse into a 500.
MAX_DEPTH = 32
TOO_DEEP = f"JSON parse error - nested deeper than {MAX_DEPTH} levels"


def nesting_exceeds(data: object, limit: int) -> bool:
    """Whether arrays and objects in `data` nest deeper than `limit` (a scalar is depth 0).

    Walks with an explicit stack, never recursion, so any depth is measured safely.
    """
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


class StrictJSONParser(JSONParser):
    """Refuses JSON nested deeper than MAX_DEPTH with a 400 (ParseError).

    Python's decoder raises RecursionError at about 1,000 levels (a 2 KB body), which would
    be a 500; shallower documents are measured after decoding.
    """

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(TOO_DEEP) from None
        if nesting_exceeds(data, MAX_DEPTH):
            raise ParseError(TOO_DEEP)
        return data
