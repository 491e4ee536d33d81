"""Benchmark-only URLconf: every production route, plus the trivial endpoint and the
"inline" tab creation the benchmark compares against. Never used in production."""

from __future__ import annotations

from django.urls import path

from bench import views
from config.urls import handler404, handler500
from config.urls import urlpatterns as production_urlpatterns

__all__ = ["handler404", "handler500", "urlpatterns"]

urlpatterns = [
    path("bench/noop/", views.NoopView.as_view(), name="bench-noop"),
    path(
        "bench/inline/tasks/<int:task_id>/tabs/",
        views.InlineTabCreateView.as_view(),
        name="bench-inline-tabs",
    ),
    *production_urlpatterns,
]
