"""ASGI entry point: HTTP through Django, websockets through Channels (served by Daphne)."""

from __future__ import annotations

import gc
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Django must be set up before importing anything that touches models.
django.setup(set_prefix=False)

from config.handlers import SyncChainASGIHandler  # noqa: E402

# What get_asgi_application() returns, but with the middleware run synchronously (see there).
django_asgi_app = SyncChainASGIHandler()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from config.routing import websocket_application  # noqa: E402

# Daphne serves /static/ itself (the workbench page's small JS modules and CSS, the admin's
# and Swagger UI's): Django's static view answers with Last-Modified and 304s, found through
# the app finders, so there is no collectstatic step and no build step to forget. We chose
# this over WhiteNoise because nothing here is large or hot enough to need its compression
# and hashed names; a deployment behind a CDN or reverse proxy can serve STATIC_ROOT instead.
application = ProtocolTypeRouter(
    {
        "http": ASGIStaticFilesHandler(django_asgi_app),
        "websocket": websocket_application(URLRouter),
    }
)

# Daphne keeps every open socket's objects alive for hours, and Python's full collections
# scan all of them: with 1,000 sockets each one paused the event loop for 100-200 ms, the
# whole tail of event delivery (docs/benchmarks.md). What startup made is never garbage:
# freeze it out of every collection. Collect the young generation every 50,000 allocations
# instead of 700, so objects that live past a request are rarely promoted and full
# collections (which still run) become rare.
gc.freeze()
gc.set_threshold(50_000, 20, 100)
