"""Confining a local sandbox's processes with bubblewrap (Debian's `bubblewrap` package).

A confined process runs in its own user, pid, ipc, uts and mount namespaces, as an
unprivileged uid, with every capability dropped and no further user namespaces. It sees the
host's /usr read-only, a few files of /etc that programs need (no /etc/shadow, no host
config), its own /proc (so no other process, and no other server's token on a command
line), a bounded private /tmp, and only the directories bound for it: its working copy and
HOME. It cannot see other sandboxes, the service's tree, its database or its environment.

A user namespace maps the sandbox's uid onto the uid that started it, so when the service
runs as root the server is first dropped to a host uid of its own (setpriv;
WORKBENCH_SANDBOX_UID_BASE + its task's id, see host_uid): otherwise root's files and
sysctls would be the sandbox's to write, and a setuid file it made would be root's.

The sandbox-agent server also gets a network namespace of its own, holding only a loopback
interface: it cannot reach Redis, the database, Daphne, other sandboxes' servers or
anything else. The service reaches it through a unix socket in the sandbox's `run/`
directory, which socat inside the sandbox forwards to the server's loopback port. git
clones run confined the same way but keep the host's network (they fetch the repository).

WORKBENCH_SANDBOX_ISOLATION: `bwrap` (required: a sandbox fails to start without it),
`none` (no confinement), or `auto` (bwrap when it works on this host, else none, with a
warning at every sandbox start). docs/providers.md says what this does and does not isolate.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from sandboxes.providers.base import ProviderError

logger = logging.getLogger(__name__)

SANDBOX_UID = 1000
# Host uids for sandboxes when the service runs as root: one per task, in this many.
_UID_RANGE = 50_000
# Sandbox keys are `t<task id>-<attempt>` (sandboxes.services.sandbox_ensure).
_TASK_KEY = re.compile(r"t(\d+)-\d+")
# Where the sandbox-agent binary appears inside a confined sandbox.
AGENT_PATH = "/opt/sandbox-agent/sandbox-agent"
# The port the server listens on inside its own network namespace (no other server there).
INNER_PORT = 2468
_ETC_FILES = (
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/localtime",
    "/etc/alternatives",
    "/etc/ssh/ssh_config",
    "/etc/ssh/ssh_config.d",
)


class IsolationUnavailable(ProviderError):
    code = "isolation_unavailable"


@dataclass(frozen=True)
class Mode:
    confined: bool
    reason: str = ""  # why not, when not


@functools.cache
def _probe() -> str:
    """'' when bwrap can confine a process on this host, else why not (checked once)."""
    binary = shutil.which("bwrap")
    if binary is None:
        return "bubblewrap (bwrap) is not installed"
    probe_uid = settings.WORKBENCH_SANDBOX_UID_BASE if os.geteuid() == 0 else None
    try:
        result = subprocess.run(
            [
                *_as_user(probe_uid),
                binary,
                *_namespace_args(share_net=False),
                "--ro-bind",
                "/usr",
                "/usr",
                *_usr_links(),
                "/bin/true",
            ],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap could not run: {exc}"
    if result.returncode != 0:
        return f"bwrap cannot create namespaces here: {result.stderr.strip()[:200]}"
    if shutil.which("socat") is None:
        return "socat is not installed (it carries the server's socket out of the sandbox)"
    return ""


def probe_problem() -> str:
    """Why bwrap cannot confine sandboxes on this host ('' when it can)."""
    return _probe()


def mode() -> Mode:
    """Whether this process confines its sandboxes; raises when confinement is required
    but impossible."""
    wanted = settings.WORKBENCH_SANDBOX_ISOLATION
    if wanted == "none":
        return Mode(False, "WORKBENCH_SANDBOX_ISOLATION=none")
    problem = _probe()
    if not problem:
        return Mode(True)
    if wanted == "bwrap":
        raise IsolationUnavailable(
            "sandbox isolation is required (WORKBENCH_SANDBOX_ISOLATION=bwrap) but unavailable"
        )
    return Mode(False, problem)


def warn_unconfined(key: str, reason: str) -> None:
    logger.warning(
        "SANDBOX %s RUNS UNCONFINED (%s): its agent can read this host's files and reach "
        "every other sandbox. Install bubblewrap and socat, or use a remote provider.",
        key,
        reason,
    )


def host_uid(key: str) -> int | None:
    """The host uid a sandbox's processes run as: its own when the service is root (None:
    the service's own, which is then not root).

    From the task's id, so no two tasks' sandboxes share a uid unless their ids are
    _UID_RANGE apart (a hash of the key collided by the birthday bound: likely past a few
    hundred live sandboxes). A task's attempts share its uid: they are the same tenant's.
    Keys of another shape (made outside sandbox_ensure) fall back to a hash.
    """
    if os.geteuid() != 0:
        return None
    task = _TASK_KEY.fullmatch(key)
    slot = int(task.group(1)) if task else zlib.crc32(key.encode())
    return settings.WORKBENCH_SANDBOX_UID_BASE + slot % _UID_RANGE


def _as_user(uid: int | None) -> list[str]:
    if uid is None:
        return []
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]


def _namespace_args(*, share_net: bool) -> list[str]:
    args = [
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--cap-drop",
        "ALL",
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_UID),
        "--hostname",
        "sandbox",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        str(settings.WORKBENCH_SANDBOX_TMP_BYTES),
        "--tmpfs",
        "/tmp",
    ]
    return [*args, "--share-net"] if share_net else args


def _usr_links() -> list[str]:
    """/bin, /lib, ... as the host has them: symlinks into /usr (merged /usr) or binds."""
    args: list[str] = []
    for name in ("bin", "sbin", "lib", "lib64", "lib32"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", str(path.readlink()), str(path)]
        elif path.is_dir():
            args += ["--ro-bind", str(path), str(path)]
    return args


def _identity(base: Path, home: Path) -> list[str]:
    """A passwd and group naming the sandbox user (ssh and some tools insist on one)."""
    etc = base / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text(
        f"sandbox:x:{SANDBOX_UID}:{SANDBOX_UID}:sandbox:{home}:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    )
    (etc / "group").write_text(f"sandbox:x:{SANDBOX_UID}:\nnogroup:x:65534:\n")
    return [
        "--ro-bind",
        str(etc / "passwd"),
        "/etc/passwd",
        "--ro-bind",
        str(etc / "group"),
        "/etc/group",
    ]


def _root_filesystem(base: Path, home: Path) -> list[str]:
    args = ["--ro-bind", "/usr", "/usr", *_usr_links()]
    for path in _ETC_FILES:
        args += ["--ro-bind-try", path, path]
    return [*args, *_identity(base, home)]


def _env(env: dict[str, str]) -> list[str]:
    args = ["--clearenv"]
    for name, value in env.items():
        args += ["--setenv", name, value]
    return args


def git_command(
    git_args: list[str],
    *,
    base: Path,
    home: Path,
    env: dict[str, str],
    read_only: list[Path],
) -> list[str]:
    """argv running git confined to `base` (writable) and `read_only` (a local source)."""
    binds = ["--bind", str(base), str(base)]
    for path in read_only:
        binds += ["--ro-bind", str(path), str(path)]
    return [
        "bwrap",
        *_namespace_args(share_net=True),
        *_root_filesystem(base, home),
        *binds,
        "--chdir",
        str(base),
        *_env(env),
        "--",
        "git",
        *git_args,
    ]


def give_to_sandbox(uid: int | None, *paths: Path) -> None:
    """Hand the sandbox's own directories to its host uid (0700: no other sandbox's uid
    may enter them, even outside the namespaces); everything else stays the service's."""
    if uid is None:
        return
    for top in paths:
        for path in (top, *top.rglob("*")):
            os.lchown(path, uid, uid)
        top.chmod(0o700)


def check_reachable(base: Path) -> None:
    """A server dropped to its own uid must be able to traverse to its directories."""
    for parent in base.parents:
        if not parent.stat().st_mode & 0o001:
            raise IsolationUnavailable(
                f"the sandbox root's parent {parent} is not traversable by sandbox users "
                "(chmod o+x it, or move WORKBENCH_SANDBOX_ROOT)"
            )


def server_command(
    *,
    key: str,
    agent_binary: str,
    base: Path,
    workdir: Path,
    home: Path,
    run: Path,
    token: str,
) -> tuple[list[str], str]:
    """argv starting a confined sandbox-agent server, and the base URL to reach it (its
    unix socket, `unix:<path>`)."""
    socket_path = run / "agent.sock"
    inner = (
        f'socat "UNIX-LISTEN:$0,fork,mode=600" TCP:127.0.0.1:{INNER_PORT} & '
        f"exec {AGENT_PATH} server --no-telemetry --host 127.0.0.1 --port {INNER_PORT} "
        '"--token=$1"'
    )
    env = {
        "HOME": str(home),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "SANDBOX_AGENT_BIN": AGENT_PATH,
    }
    argv = [
        *_as_user(host_uid(key)),
        "bwrap",
        *_namespace_args(share_net=False),
        *_root_filesystem(base, home),
        "--ro-bind",
        agent_binary,
        AGENT_PATH,
        "--bind",
        str(workdir),
        str(workdir),
        "--bind",
        str(home),
        str(home),
        "--bind",
        str(run),
        str(run),
        "--chdir",
        str(workdir),
        *_env(env),
        "--",
        "/bin/sh",
        "-c",
        inner,
        str(socket_path),
        token,
    ]
    return argv, f"unix:{socket_path}"
