"""Run the reconciler once (what Celery beat runs every WORKBENCH_RECONCILE_INTERVAL)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from workbench import reconciler


class Command(BaseCommand):
    help = "Re-drive stalled pending tabs and undelivered prompts; fail tabs stalled too often."

    def handle(self, *args: Any, **options: Any) -> None:
        result = reconciler.reconcile()
        self.stdout.write(
            f"re-drove {result['redriven']} tab(s), failed {result['failed']}, "
            f"re-sent prompts of {result['prompts']} tab(s)"
        )
