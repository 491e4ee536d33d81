"""Jobs a snapshot builder process runs in tests (module level, so a spawned builder can
import them by name; none touches the database)."""

from __future__ import annotations

import os
from pathlib import Path

from workbench.snapshots import NotMember


def pid() -> int:
    return os.getpid()


def refuse(user_id: int) -> None:
    raise NotMember(user_id)


def die_once(flag: str) -> str:
    """Kill the builder the first time (as the OOM killer would), build the second."""
    if not Path(flag).exists():
        Path(flag).touch()
        os._exit(1)
    return f"built by {os.getpid()}"
