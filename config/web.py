"""Several Daphne processes on one port: the web tier's way to use more than one core.

One Daphne is one process: its event loop and the thread pool that runs Django's sync views
share one GIL, so HTTP and websockets use one core however many the host has. Here each of
N Daphnes (config.server, so each still refuses large bodies unread) is started on a
listening socket opened for it with `--fd` (supervisord's `fcgi-program` way in Channels'
deployment docs), all bound to the same port with SO_REUSEPORT: the kernel spreads new
connections evenly over them, where one shared socket lets whichever process wakes first
take a whole burst. Every process is a full peer: its own fan-out hub joins the channel layer
(workbench/fanout.py) and socket quotas are counted in Redis, so where a socket lands does
not matter.

    python -m config.web --processes 2 -b 127.0.0.1 -p 8000 config.asgi:application

Any other argument goes to every Daphne. When one of them exits, the others are stopped and
this exits with its status, so the supervisor (honcho under `make run`, systemd in a deploy)
sees the tier as one process.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import FrameType


def default_processes() -> int:
    """WORKBENCH_WEB_PROCESSES, else one per core up to 4."""
    configured = os.environ.get("WORKBENCH_WEB_PROCESSES", "")
    if configured.strip():
        return max(1, int(configured))
    return max(1, min(os.cpu_count() or 1, 4))


def listen(host: str, port: int, backlog: int = 1024) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=default_processes())
    parser.add_argument("-b", "--bind", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=8000)
    args, daphne_args = parser.parse_known_args(argv)
    # All bound before any child starts: a port taken by something else fails here, once.
    sockets = [listen(args.bind, args.port) for _ in range(max(1, args.processes))]
    children = []
    for sock in sockets:
        fd = sock.fileno()
        command = [sys.executable, "-m", "config.server", "--fd", str(fd), *daphne_args]
        children.append(subprocess.Popen(command, pass_fds=(fd,)))
        sock.close()  # its child holds it now
    print(
        f"web: {len(children)} Daphne processes on http://{args.bind}:{args.port}/"
        f" (pids {', '.join(str(c.pid) for c in children)})",
        flush=True,
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    _, status = os.wait()  # the first child to exit ends the tier
    stop(signal.SIGTERM, None)
    for child in children:
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(main())
