"""Throttles."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rest_framework.throttling import ScopedRateThrottle

if TYPE_CHECKING:
    from rest_framework.request import Request


class CreateRateThrottle(ScopedRateThrottle):
    """A per-user rate on a view's POST only (reads of the same resource are not limited)."""

    def allow_request(self, request: Request, view: Any) -> bool:
        if request.method != "POST":
            return True
        return super().allow_request(request, view)
