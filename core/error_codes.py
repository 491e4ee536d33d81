"""Every error code the API answers with: its HTTP status and what it means, in one table.

The OpenAPI schema (each operation's error responses and its `x-error-codes`) and
docs/api.md are both made from this table, so neither can drift from the other; a test
fails when the API answers a code its operation does not list
(tests/unit/test_error_codes.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ErrorCode:
    status: int
    meaning: str


CODES: dict[str, ErrorCode] = {
    # Any request
    "not_authenticated": ErrorCode(
        401, "No credentials: send `Authorization: Token ...` or sign in (session and CSRF)."
    ),
    "authentication_failed": ErrorCode(401, "The token is unknown, or the user is inactive."),
    "permission_denied": ErrorCode(
        403, "A signed-in browser request without a valid CSRF token (send `X-CSRFToken`)."
    ),
    "throttled": ErrorCode(
        429, "Too many requests of this kind from you; `Retry-After` says when to try again."
    ),
    "unavailable": ErrorCode(
        503, "The database is busy or unreachable; nothing was changed. Retry after `Retry-After`."
    ),
    "bad_request": ErrorCode(
        400,
        "Refused before it reached the API: a Host header this service does not answer for, "
        "or an otherwise malformed request.",
    ),
    # A body
    "invalid": ErrorCode(
        400,
        "The body or a query parameter is malformed; `fields` names each bad field and why "
        "(an unknown field is refused too).",
    ),
    "parse_error": ErrorCode(400, "The body is not valid JSON."),
    "unsupported_media_type": ErrorCode(415, "Send bodies as `application/json`."),
    "too_large": ErrorCode(413, "The body is larger than the service takes; nothing was read."),
    "invalid_cursor": ErrorCode(400, "The `cursor` is not one this list gave out."),
    # Workspaces and members
    "not_found": ErrorCode(404, "No such object, or not in a workspace you are a member of."),
    "workspace_not_found": ErrorCode(
        404, "No such workspace, or you are not a member of it (never 403: it is not yours)."
    ),
    "not_an_owner": ErrorCode(403, "Only the workspace's owners manage its members."),
    "member_not_found": ErrorCode(404, "That user is not a member of this workspace."),
    "user_not_found": ErrorCode(404, "No user with that username or email."),
    "already_member": ErrorCode(409, "That user is already a member."),
    "ambiguous_email": ErrorCode(
        409, "Several users have that email address; add the member by username."
    ),
    "last_owner": ErrorCode(
        409, "The workspace's last owner cannot leave or be demoted; make another owner first."
    ),
    # Tasks
    "task_not_found": ErrorCode(404, "No such task in a workspace you are a member of."),
    "task_archived": ErrorCode(409, "The task is archived: it takes no new tabs or retries."),
    # Tabs
    "tab_not_found": ErrorCode(404, "No such tab in a workspace you are a member of."),
    "invalid_idempotency_key": ErrorCode(400, "`Idempotency-Key` must be 1 to 255 characters."),
    "idempotency_key_reused": ErrorCode(
        409, "This `Idempotency-Key` opened a tab with another title; use a new key."
    ),
    "too_many_tabs": ErrorCode(409, "The task has as many open tabs as it may; close some."),
    "too_many_tabs_for_user": ErrorCode(409, "You have as many open tabs as you may; close some."),
    "tab_closed": ErrorCode(409, "The tab is closed; closed tabs take no edits or prompts."),
    "not_in_error": ErrorCode(409, "Only a tab in `error` can be retried."),
    "conflict": ErrorCode(409, "The tab changed while the request ran; read it again and retry."),
    "unknown_model": ErrorCode(
        400, "The agent offers no such model in this sandbox; `fields.model` lists the choices."
    ),
    "model_not_applied": ErrorCode(
        409, "The agent did not take the model (its reason is in the message); nothing changed."
    ),
    "sandbox_lost": ErrorCode(
        409, "The tab's sandbox is gone; the tab is now in error, and retrying re-provisions it."
    ),
    # The transcript
    "too_many_queued": ErrorCode(
        409, "The tab already has as many prompts waiting as it may; send more once delivered."
    ),
    "no_running_turn": ErrorCode(409, "No agent turn is running in this tab."),
    "cancel_failed": ErrorCode(409, "The agent could not be reached to stop its turn."),
}

# What every operation may answer, whatever it does.
ANY_REQUEST = (
    "bad_request",
    "not_authenticated",
    "authentication_failed",
    "throttled",
    "unavailable",
)
# What every operation that reads a body may answer besides.
WITH_BODY = ("invalid", "parse_error", "unsupported_media_type", "too_large", "permission_denied")


def codes_of(*codes: str, body: bool = False, public: bool = False) -> list[str]:
    """The codes an operation may answer: its own, the body's, and any request's (a
    `public` one takes no credentials)."""
    common = [c for c in ANY_REQUEST if not (public and c == "not_authenticated")]
    every = [*codes, *(WITH_BODY if body else ()), *common]
    unknown = [code for code in every if code not in CODES]
    if unknown:
        raise ValueError(f"undocumented error codes {unknown}: add them to CODES")
    return sorted(set(every), key=lambda code: (CODES[code].status, code))


def describe(codes: list[str]) -> dict[int, str]:
    """The description of each status's error response: its codes and their meanings."""
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(CODES[code].status, []).append(code)
    return {
        status: "\n".join(f"- `{code}`: {CODES[code].meaning}" for code in names)
        for status, names in sorted(by_status.items())
    }


def schema_extension(codes: list[str]) -> dict[str, Any]:
    """The operation's `x-error-codes`: every code it may answer, machine-readable."""
    return {"x-error-codes": codes}


_INTRO = """\
# The API's errors

Generated from `core/error_codes.py` by `python manage.py write_api_docs` (a test fails when
this file is out of date). The OpenAPI schema (`/api/schema/`, browsable at `/api/docs/`)
lists the same codes for each operation, as its error responses and as `x-error-codes`.

Every error answer has one shape, whatever its status:

```json
{"error": {"code": "not_in_error", "fields": {},
           "message": "only a tab in error can be retried; this one is ready"}}
```

- `code` is for programs: stable, listed below. Branch on it, not on the status or message.
- `message` is for people: what went wrong and, where there is one, what to do.
- `fields` names the input at fault (`{"text": ["a message needs some text"]}`, or for
  `unknown_model` `{"model": ["choose one of: ..."]}`).

A refused request changes nothing. 429 and 503 answers carry `Retry-After` (seconds).
Somebody else's workspace, task or tab is a 404, never a 403: the API does not say whether it
exists.
"""


def api_doc(schema: dict[str, Any]) -> str:
    """docs/api.md: the envelope, every code, and each operation's codes (from `schema`,
    the OpenAPI schema drf-spectacular makes of the views)."""
    lines = [_INTRO, "## Codes", "", "| code | status | meaning |", "|---|---|---|"]
    for code, about in sorted(CODES.items(), key=lambda item: (item[1].status, item[0])):
        lines.append(f"| `{code}` | {about.status} | {about.meaning} |")
    lines += ["", "## Operations", ""]
    lines += [
        "Every operation may also answer "
        + ", ".join(f"`{code}`" for code in ANY_REQUEST)
        + "; one that reads a body also "
        + ", ".join(f"`{code}`" for code in WITH_BODY)
        + ".",
        "",
        "| operation | summary | its own codes |",
        "|---|---|---|",
    ]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if "x-error-codes" not in operation:
                continue
            codes = operation["x-error-codes"]
            body = set(WITH_BODY) <= set(codes)
            hidden = set(ANY_REQUEST) | (set(WITH_BODY) if body else set())
            own = [f"`{code}`" for code in codes if code not in hidden]
            shown = ", ".join([*own, *(["the body's"] if body else [])]) or "-"
            lines.append(f"| `{method.upper()} {path}` | {operation['summary']} | {shown} |")
    return "\n".join(lines) + "\n"
