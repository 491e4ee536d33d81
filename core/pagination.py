"""Cursor pages for every list of the API (DRF's CursorPagination): the body stays the list
of items, and the way on is in a `Link` header (RFC 8288, as GitHub's API does), so a
client that reads one page as before keeps working and one that follows `rel="next"` gets
them all. A cursor is a position in an indexed ordering, not an offset: a page costs the
same at row 10,000 as at row 1, and rows added meanwhile do not shift it.

The transcript keeps its `{"next", "previous", "results"}` body (what clients already read)
and carries the same `Link` header.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework.exceptions import NotFound as CursorNotFound
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.response import Response

from core.errors import InvalidInput

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from rest_framework.request import Request
    from rest_framework.views import APIView

CURSOR = OpenApiParameter("cursor", OpenApiTypes.STR, required=False)
PAGE_SIZE = OpenApiParameter("page_size", OpenApiTypes.INT, required=False)
PAGE_PARAMETERS = [CURSOR, PAGE_SIZE]


def link_header(next_url: str | None, previous_url: str | None) -> str:
    pairs = (("next", next_url), ("prev", previous_url))
    return ", ".join(f'<{url}>; rel="{rel}"' for rel, url in pairs if url)


class StrictCursorPagination(CursorPagination):
    """A cursor that cannot be read is a 400 (`invalid_cursor`): DRF answers 404, which
    would say the list itself is missing."""

    def decode_cursor(self, request: Request) -> Cursor | None:
        try:
            return super().decode_cursor(request)
        except CursorNotFound as exc:
            raise InvalidInput(
                "The cursor is not one this list gave out; follow the Link header.",
                code="invalid_cursor",
            ) from exc

    def with_link(self, response: Response) -> Response:
        """`response` with `Link: <…>; rel="next", <…>; rel="prev"` for this page."""
        links = link_header(self.get_next_link(), self.get_previous_link())
        if links:
            response["Link"] = links
        return response


class LinkCursorPagination(StrictCursorPagination):
    """A page of a list as a JSON array, and `Link: <…>; rel="next"` while there is more."""

    page_size = 100
    max_page_size = 500
    page_size_query_param = "page_size"

    def __init__(self, ordering: str | tuple[str, ...]) -> None:
        self.ordering = ordering

    def get_paginated_response(self, data: Any) -> Response:
        return self.with_link(Response(data))


def paginated(
    request: Request,
    view: APIView,
    rows: QuerySet[Any],
    *,
    ordering: str | tuple[str, ...],
    serialize: Any,
) -> Response:
    """One page of `rows` in `ordering`, serialized by `serialize(page) -> list`."""
    paginator = LinkCursorPagination(ordering)
    page = paginator.paginate_queryset(rows, request, view=view)
    return paginator.get_paginated_response(serialize(page or []))
