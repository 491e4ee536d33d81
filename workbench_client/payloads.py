"""What the API answers, as TypedDicts: the shapes of the OpenAPI schema (/api/schema/).

They are plain dicts at runtime (what the JSON decodes to), so a field the service adds later
is simply there; these name the ones a client may rely on.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

TabState = Literal["pending_provision", "pending_session_create", "ready", "error", "closed"]
MessageState = Literal["queued", "sending", "streaming", "complete", "failed"]


class Workspace(TypedDict):
    id: int
    name: str
    role: str
    created_at: str


class Member(TypedDict):
    workspace: int
    user: int
    username: str
    name: str
    role: str
    joined_at: str


class PlannedStep(TypedDict):
    name: str
    estimate_ms: int | None


class Step(TypedDict):
    id: int
    sandbox: int
    name: str
    outcome: str  # running, ok, failed, ...
    detail: str
    log: str
    started_at: str
    finished_at: str | None
    duration_ms: int | None


class ModelChoice(TypedDict):
    value: str
    name: str


class Sandbox(TypedDict):
    id: int
    task: int
    provider: str
    agent: str
    state: str
    error_code: str
    error_message: str
    version: int
    created_at: str
    ready_at: str | None
    destroyed_at: str | None
    models: list[ModelChoice]
    default_model: str
    plan: list[PlannedStep]
    steps: list[Step]


class Task(TypedDict):
    id: int
    workspace: int
    title: str
    repository: str
    branch: str
    provider: str
    agent: str
    archived: bool
    version: int
    created_at: str
    updated_at: str
    archived_at: str | None
    sandbox: Sandbox | None


class Tab(TypedDict):
    id: str
    workspace: int
    task: int
    sandbox: int | None
    title: str
    agent: str
    state: TabState
    error_code: str
    error_message: str
    session_id: str
    model: str
    session_model: str
    attempt: int
    version: int
    created_at: str
    updated_at: str
    state_changed_at: str
    ready_at: str | None
    closed_at: str | None
    running_since: str | None  # when the running agent turn started; None when none runs
    unread: bool  # yours
    draft: str  # yours


class Message(TypedDict):
    id: int
    tab: str
    workspace: int
    role: Literal["user", "agent"]
    text: str
    state: MessageState
    error_message: str
    reply_to: int | None
    version: int
    created_at: str
    updated_at: str


class TaskStarted(Task):
    """A task just created; with `prompt`, its first tab and the queued prompt."""

    first_tab: Tab | None  # null without a prompt
    first_message: Message | None


class Agent(TypedDict):
    name: str
    models: list[ModelChoice]
    default_model: str


class WorkbenchPage(TypedDict):
    """A page of the workbench; the first (the snapshot) also has seq, me, workspace, members."""

    tasks: list[Task]
    tabs: list[Tab]
    next: str | None


class Snapshot(WorkbenchPage):
    type: Literal["snapshot"]
    seq: int
    me: int
    workspace: Workspace
    members: list[Member]


class EventFrame(TypedDict):
    """One websocket event: `event` names it (docs/websocket.md), `data` is its object."""

    type: Literal["event"]
    seq: int
    event: str
    data: dict[str, Any]
