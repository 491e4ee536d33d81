"""The start of a snapshot builder process (workbench/snapshots.py).

Nothing here may import a model: a spawned builder unpickles this function, importing its
module, before anything else, so before Django is set up.
"""

from __future__ import annotations

import gc
import os
import threading

import django


def start() -> None:
    """Django (its settings come with the environment), and a watch that ends the builder
    once its Daphne is gone (a Daphne killed outright cannot stop it)."""
    parent = os.getppid()
    django.setup(set_prefix=False)
    # As in Daphne (config/asgi.py): what setup made is never garbage, so full collections
    # need not scan it, and a build's short-lived rows rarely reach the older generations.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)

    def watch() -> None:
        while os.getppid() == parent:
            threading.Event().wait(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
