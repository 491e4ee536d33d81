"""The `bench` app: timing hooks that only benchmark runs install (bench.settings)."""

from __future__ import annotations

from django.apps import AppConfig


class BenchConfig(AppConfig):
    name = "bench"
    label = "bench"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from bench import instrument

        instrument.install()
