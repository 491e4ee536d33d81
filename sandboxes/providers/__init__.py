"""Provider registry: names in WORKBENCH_PROVIDERS map to implementations of `base.Provider`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    from sandboxes.providers.base import Provider


def _local() -> Provider:
    from sandboxes.providers.local import LocalProvider

    return LocalProvider()


def _remote() -> Provider:
    from sandboxes.providers.remote import RemoteProvider

    return RemoteProvider()


_FACTORIES = {"local": _local, "remote": _remote}


def available_providers() -> list[str]:
    """Provider names a task may use: configured and implemented."""
    return [name for name in settings.WORKBENCH_PROVIDERS if name in _FACTORIES]


def get_provider(name: str) -> Provider:
    if name not in available_providers():
        raise KeyError(name)
    return _FACTORIES[name]()
