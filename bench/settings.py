"""Settings for benchmark runs: the production settings plus two benchmark-only routes.

`bench/service.py` starts Daphne and the Celery worker with
`DJANGO_SETTINGS_MODULE=bench.settings`. Nothing else differs from `config.settings`: the
routes of `config.urls` are served unchanged, and the `bench` app only adds timing hooks.
"""

from __future__ import annotations

from config.settings import *  # noqa: F403
from config.settings import INSTALLED_APPS

ROOT_URLCONF = "bench.urls"
INSTALLED_APPS = [*INSTALLED_APPS, "bench.apps.BenchConfig"]
