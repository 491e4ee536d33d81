"""The client's exceptions: one per kind of refusal, each carrying the API's error body.

Every API error answers `{"error": {"code", "message", "fields"}}` (docs/api.md); the class is
chosen by HTTP status, so `except NotFound` catches `tab_not_found` and `workspace_not_found`
alike while `err.code` tells them apart.
"""

from __future__ import annotations

from typing import Any

__all__ = [
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
    "TabClosed",
    "TabFailed",
    "WaitTimeout",
    "WorkbenchAPIError",
    "WorkbenchError",
    "error_for_status",
]


class WorkbenchError(Exception):
    """Anything the client raises on purpose: `code` is machine-readable, `message` human."""

    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def as_dict(self) -> dict[str, Any]:
        """The API's error envelope (what `workbench --json` prints)."""
        return {"error": {"code": self.code, "message": self.message, "fields": {}}}


class WorkbenchAPIError(WorkbenchError):
    """The API answered with an error status; `status` is it, `fields` names bad inputs."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        status: int,
        fields: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.fields = fields or {}
        self.headers = headers or {}

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "fields": self.fields,
                "status": self.status,
            }
        }


class BadRequest(WorkbenchAPIError):
    """400: the body or a parameter is malformed (`fields` says which)."""


class AuthenticationError(WorkbenchAPIError):
    """401: no token, or one the service does not know (log in again)."""


class PermissionDenied(WorkbenchAPIError):
    """403: signed in, but not allowed (e.g. only owners manage members)."""


class NotFound(WorkbenchAPIError):
    """404: no such object, or it is in a workspace you are not a member of."""


class Conflict(WorkbenchAPIError):
    """409: the object's state refuses this (`tab_closed`, `not_in_error`, ...)."""


class PayloadTooLarge(WorkbenchAPIError):
    """413: the body is over the service's limit."""


class _RetryAfter(WorkbenchAPIError):
    @property
    def retry_after(self) -> float | None:
        """Seconds to wait before trying again (the `Retry-After` header), if given."""
        try:
            return float(self.headers.get("retry-after", ""))
        except ValueError:
            return None


class RateLimited(_RetryAfter):
    """429 (or a socket closed with 4429): too many requests; see `retry_after`."""


class ServiceUnavailable(_RetryAfter):
    """503: the service is busy; nothing changed; see `retry_after`."""


class ServerError(WorkbenchAPIError):
    """Any other 5xx."""


class ConnectionFailed(WorkbenchError):
    """The service could not be reached (or the connection dropped mid-request)."""

    code = "connection_failed"


class WaitTimeout(WorkbenchError, TimeoutError):
    """A helper's wait (a tab becoming ready, a reply) passed its deadline."""

    code = "timeout"


class TabFailed(WorkbenchError):
    """The tab went to `error` while waited on: `code` is its `error_code`; `tab` is it."""

    def __init__(self, tab: dict[str, Any]) -> None:
        super().__init__(tab.get("error_message") or "the tab failed", code=tab.get("error_code"))
        self.tab = tab


class TabClosed(WorkbenchError):
    """The tab was closed while waited on."""

    code = "tab_closed"

    def __init__(self, tab: dict[str, Any]) -> None:
        super().__init__(f"tab {tab.get('id')} was closed")
        self.tab = tab


class PromptFailed(WorkbenchError):
    """A prompt failed before any reply (e.g. its tab closed while it waited)."""

    code = "prompt_failed"

    def __init__(self, message: dict[str, Any]) -> None:
        super().__init__(message.get("error_message") or "the prompt failed")
        self.prompt = message


_BY_STATUS: dict[int, type[WorkbenchAPIError]] = {
    400: BadRequest,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    429: RateLimited,
    503: ServiceUnavailable,
}


def error_for_status(status: int, body: Any, headers: dict[str, str]) -> WorkbenchAPIError:
    """The exception for an error answer: `body` is its decoded JSON (or None)."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = str(error.get("code") or "error")
        message = str(error.get("message") or "")
        fields = error.get("fields") if isinstance(error.get("fields"), dict) else {}
    else:  # not the API's envelope (a proxy's page, say)
        code, message, fields = f"http_{status}", f"HTTP {status}", {}
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else WorkbenchAPIError
    lowered = {key.lower(): value for key, value in headers.items()}
    return cls(message, code=code, status=status, fields=fields, headers=lowered)
