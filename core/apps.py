from __future__ import annotations

from django.apps import AppConfig


class CoreConfig(AppConfig):
    """The bottom app: workspaces, membership, the event log, the lock order, the domain
    errors and the API's base shapes. It imports no other app of the project."""

    name = "core"
    verbose_name = "Workspaces"
    default_auto_field = "django.db.models.BigAutoField"
