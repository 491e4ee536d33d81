"""What the service asks of a made sandbox through its provider: health, agent sessions,
and freeing it (destroyed, or a failed one released)."""

from __future__ import annotations

import contextlib
import logging
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING

from django.utils.timezone import now

from core import logs
from core.locks import workspace_transaction
from core.transitions import transition
from sandboxes import providers
from sandboxes.models import (
    SANDBOX_TRANSITIONS,
    Sandbox,
    SandboxState,
)
from sandboxes.providers.base import ProviderError
from sandboxes.services.transitions import handle_of, record_sandbox, workspace_id_of

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from sandboxes.providers.base import PromptResult

logger = logging.getLogger(__name__)


@contextmanager
def _provider_call(what: str, sandbox: Sandbox) -> Iterator[None]:
    """One line per provider call, with its duration or its failure, under the sandbox's
    ids (core/logs.py): what an operator greps for when a tab is slow or stuck."""
    logs.bind(sandbox=sandbox.pk, task=sandbox.task_id)
    started = time.monotonic()
    try:
        yield
    except ProviderError as exc:
        took = (time.monotonic() - started) * 1000
        logger.warning(
            "provider %s failed after %.0f ms (%s): %s", what, took, exc.code, exc.message
        )
        raise
    logger.info("provider %s took %.0f ms", what, (time.monotonic() - started) * 1000)


def sandbox_destroy(*, sandbox_id: int) -> bool:
    """destroying -> destroyed: stop its server and remove its files. Safe to repeat."""
    sandbox = Sandbox.objects.filter(pk=sandbox_id, state=SandboxState.DESTROYING).first()
    if sandbox is None:
        return False
    provider = providers.get_provider(sandbox.provider)
    with _provider_call("destroy", sandbox):
        provider.destroy(sandbox.key, handle_of(sandbox) if sandbox.base_url else None)
    with workspace_transaction(workspace_id_of(sandbox_id)):
        updated = transition(
            Sandbox.objects.filter(pk=sandbox_id),
            table=SANDBOX_TRANSITIONS,
            to=SandboxState.DESTROYED,
            destroyed_at=now(),
        )
        if updated == 1:
            record_sandbox(sandbox_id)
    return updated == 1


def sandbox_release_failed(*, sandbox_id: int) -> bool:
    """Stop whatever a failed sandbox still runs and remove its files; the row keeps its
    state and error for users and operators. Safe to repeat."""
    sandbox = Sandbox.objects.filter(pk=sandbox_id, state=SandboxState.FAILED).first()
    if sandbox is None:
        return False
    provider = providers.get_provider(sandbox.provider)
    with _provider_call("release", sandbox):
        provider.destroy(sandbox.key, handle_of(sandbox) if sandbox.base_url else None)
    Sandbox.objects.filter(pk=sandbox_id, state=SandboxState.FAILED).update(released_at=now())
    return True


def sandbox_healthy(*, sandbox: Sandbox) -> bool:
    """Whether a ready sandbox's server answers (a provider error counts as no)."""
    try:
        return providers.get_provider(sandbox.provider).health(handle_of(sandbox))
    except ProviderError:
        return False


def sandbox_session_open(*, sandbox: Sandbox, server_id: str, agent: str, model: str = "") -> str:
    """Start an agent session in a ready sandbox, with `model` if one is chosen; returns
    the session id."""
    provider = providers.get_provider(sandbox.provider)
    handle = handle_of(sandbox)
    with _provider_call(f"session open {server_id} ({agent})", sandbox):
        session_id = provider.create_session(
            handle, server_id=server_id, agent=agent, cwd=sandbox.workdir
        )
    if model:
        try:
            provider.set_model(handle, server_id=server_id, session_id=session_id, model=model)
        except ProviderError:
            # A session that is not what the tab asked for is not the tab's: tear it down
            # (a retried step would otherwise make a second one beside it).
            with contextlib.suppress(ProviderError):
                provider.destroy_session(handle, server_id=server_id)
            raise
    return session_id


def sandbox_session_set_model(
    *, sandbox: Sandbox, server_id: str, session_id: str, model: str
) -> None:
    """Give a live session another model (ProviderError with the agent's reason if not)."""
    with _provider_call(f"set model {model!r} on {server_id}", sandbox):
        providers.get_provider(sandbox.provider).set_model(
            handle_of(sandbox), server_id=server_id, session_id=session_id, model=model
        )


def model_choices(sandbox: Sandbox) -> list[str]:
    """The model values the sandbox's server offers for its agent (empty: not known)."""
    return [str(option[0]) for option in sandbox.agent_models]


def sandbox_session_prompt(
    *,
    sandbox: Sandbox,
    server_id: str,
    session_id: str,
    text: str,
    last_event_id: str,
    on_text: Callable[[str], None],
) -> PromptResult:
    """Run one agent turn in the tab's session; raises ProviderError / SandboxGone."""
    provider = providers.get_provider(sandbox.provider)
    with _provider_call(f"prompt on {server_id}", sandbox):
        return provider.prompt(
            handle_of(sandbox),
            server_id=server_id,
            session_id=session_id,
            text=text,
            last_event_id=last_event_id,
            on_text=on_text,
        )


def sandbox_session_cancel(*, sandbox: Sandbox, server_id: str, session_id: str) -> None:
    provider = providers.get_provider(sandbox.provider)
    with _provider_call(f"cancel on {server_id}", sandbox):
        provider.cancel(handle_of(sandbox), server_id=server_id, session_id=session_id)


def sandbox_session_close(*, sandbox: Sandbox, server_id: str) -> None:
    provider = providers.get_provider(sandbox.provider)
    with _provider_call(f"session close {server_id}", sandbox):
        provider.destroy_session(handle_of(sandbox), server_id=server_id)
