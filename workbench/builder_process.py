"""The start of a snapshot builder process (workbench/snapshots.py).

A spawned builder unpickles this function, importing this module, before Django is set up
(after only its Daphne's entry module, which spawn re-imports as `__mp_main__`): nothing
here, nor in the modules `config.server` imports at its top, may import a model.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import threading
from typing import TYPE_CHECKING

import django

if TYPE_CHECKING:
    from multiprocessing.queues import SimpleQueue


def start(started: SimpleQueue[int]) -> None:
    """Django (its settings come with the environment), and a watch that ends the builder
    once its Daphne is gone: a Daphne killed outright cannot stop it, and a builder holds
    both ends of its job queue's pipe, so it would never see that queue end. Then its pid
    on `started`: the builder is ready (Daphne's /readyz waits for every one)."""
    # Ctrl-C reaches the whole process group: Daphne stops its builders itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    django.setup(set_prefix=False)
    # As in Daphne (config/asgi.py): what setup made is never garbage, so full collections
    # need not scan it, and a build's short-lived rows rarely reach the older generations.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    if parent is not None:  # its sentinel is readable from the moment the parent is gone

        def watch() -> None:
            parent.join()
            os._exit(0)

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    started.put(os.getpid())
