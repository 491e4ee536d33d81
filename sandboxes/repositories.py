"""Which repositories a member may have cloned into a sandbox, and how git is told so.

A repository is a member's input that the service turns into a `git clone` on its own
hosts, so it is checked twice: when a task is created or edited (a clear 400), and again by
the provider just before git runs (the row may predate the policy, or be written by an
operator). Refusals name the rule that was broken, never what exists on the host.

- Remote URLs: only the schemes in WORKBENCH_REPOSITORY_SCHEMES (https and ssh by default,
  scp-like `user@host:path` counting as ssh). Hosts that are loopback, private, link-local
  or otherwise non-public addresses are refused unless WORKBENCH_REPOSITORY_ALLOW_PRIVATE_HOSTS
  is on: a clone must not be a way to probe the service's own network.
- git's remote helpers (`transport::address`, e.g. `fd::0` or `ext::sh -c ...`) never.
- Local paths (or `file://` URLs): absolute, and inside one of WORKBENCH_REPOSITORY_ROOTS
  after symlinks are resolved, and never inside the sandbox root, the service's own tree or
  its data directory, whatever the roots say.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from django.conf import settings

MAX_LENGTH = 1000
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# git reads `<transport>::<address>` as "run git-remote-<transport>".
_HELPER = re.compile(r"^[A-Za-z0-9+.-]+::")
# git's scp-like syntax: `[user@]host:path`, a colon before any slash.
_SCP = re.compile(r"^(?:(?P<user>[^@/]+)@)?(?P<host>\[[^\]/]+\]|[^:/\[\]]+):(?P<path>.*)$")


class RepositoryRefused(ValueError):
    """The repository breaks the policy; the message says which rule, for the member."""


@dataclass(frozen=True)
class Repository:
    """A repository the policy admits: what to hand git, and what git will touch."""

    kind: Literal["remote", "local"]
    url: str  # the argument for `git clone`
    host: str = ""  # remote only
    path: Path | None = None  # local only: the resolved directory

    @property
    def protocols(self) -> str:
        """The value for GIT_ALLOW_PROTOCOL: only what this clone needs."""
        if self.kind == "local":
            return "file"
        return ":".join(settings.WORKBENCH_REPOSITORY_SCHEMES)


def check_repository(value: str, *, resolve_hosts: bool = False) -> Repository | None:
    """The admitted form of `value` ('' means no repository: None), else RepositoryRefused.

    `resolve_hosts` also looks the host name up and refuses a name that points at a
    non-public address (the provider does so just before cloning; the API does not wait on
    DNS).
    """
    if not value:
        return None
    if len(value) > MAX_LENGTH:
        raise RepositoryRefused(f"a repository is at most {MAX_LENGTH} characters")
    if value != value.strip() or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise RepositoryRefused(
            "a repository may not hold spaces at its ends or control characters"
        )
    if value.startswith("-"):
        raise RepositoryRefused("a repository may not start with '-'")
    scheme = _SCHEME.match(value)
    if scheme:
        return _check_url(value, scheme.group(1).lower(), resolve_hosts=resolve_hosts)
    if _HELPER.match(value):
        raise RepositoryRefused("git remote helpers ('transport::address') are not allowed")
    scp = _SCP.match(value)
    if scp and not value.startswith("/"):
        host = scp.group("host").strip("[]")
        _require_scheme("ssh")
        _check_host(host, resolve=resolve_hosts)
        if scp.group("path").startswith("-"):
            raise RepositoryRefused("a repository path may not start with '-'")
        return Repository("remote", value, host=host)
    return _check_local(value)


def _require_scheme(scheme: str) -> None:
    allowed = settings.WORKBENCH_REPOSITORY_SCHEMES
    if scheme not in allowed:
        raise RepositoryRefused(
            f"repositories over {scheme} are not allowed here; allowed: "
            f"{', '.join(allowed) or 'none'}"
        )


def _check_url(value: str, scheme: str, *, resolve_hosts: bool) -> Repository:
    if scheme == "file":
        parts = urlsplit(value)
        if parts.netloc not in ("", "localhost"):
            raise RepositoryRefused("a file:// repository may not name a host")
        return _check_local(unquote(parts.path))
    _require_scheme(scheme)
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise RepositoryRefused("the repository URL is malformed") from None
    if not host:
        raise RepositoryRefused("a repository URL must name a host")
    _check_host(host, resolve=resolve_hosts)
    return Repository("remote", value, host=host)


def _check_host(host: str, *, resolve: bool) -> None:
    if settings.WORKBENCH_REPOSITORY_ALLOW_PRIVATE_HOSTS:
        return
    if host.lower().rstrip(".") in {"localhost", "localhost.localdomain"} or host.lower().endswith(
        ".localhost"
    ):
        raise RepositoryRefused("repositories on this host's own network are not allowed")
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        if not resolve:
            return
        addresses = _resolved(host)
    if any(not address.is_global for address in addresses):
        raise RepositoryRefused("repositories on this host's own network are not allowed")


def _resolved(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []  # git will fail to reach it too, with the ordinary clone error
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


def _forbidden_trees() -> list[Path]:
    """Never cloned from, whatever the roots: other sandboxes, the service and its data."""
    trees = [settings.WORKBENCH_SANDBOX_ROOT, settings.BASE_DIR, settings.VAR_DIR]
    return [Path(tree).resolve() for tree in trees]


def _check_local(value: str) -> Repository:
    roots = [Path(root).resolve() for root in settings.WORKBENCH_REPOSITORY_ROOTS]
    if not roots:
        raise RepositoryRefused(
            "local repositories are not allowed here; use an "
            f"{' or '.join(settings.WORKBENCH_REPOSITORY_SCHEMES) or 'allowed'} URL"
        )
    if not value.startswith("/"):
        raise RepositoryRefused("a local repository must be an absolute path")
    path = Path(value).resolve()  # symlinks and '..' resolved: the place git would read
    if any(path == tree or tree in path.parents for tree in _forbidden_trees()):
        raise RepositoryRefused("a local repository must be under an allowed root")
    if not any(path == root or root in path.parents for root in roots):
        raise RepositoryRefused("a local repository must be under an allowed root")
    return Repository("local", str(path), path=path)
