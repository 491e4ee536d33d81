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
from typing import Literal, TypeAlias
from urllib.parse import unquote, urlsplit

from django.conf import settings

MAX_LENGTH = 1000
IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# git reads `<transport>::<address>` as "run git-remote-<transport>".
_HELPER = re.compile(r"^[A-Za-z0-9+.-]+::")
# git's scp-like syntax: `[user@]host:path`, a colon before any slash.
_SCP = re.compile(r"^(?:(?P<user>[^@/:]*)@)?(?P<host>\[[^\]/]*\]|[^:/\[\]]+):(?P<path>.*)$")
# What a host may be, strictly: DNS labels (or an IP literal, checked apart). Anything else
# (percent escapes, '@', a port inside brackets) is read differently by curl or ssh than by
# this parser, so it is refused rather than interpreted.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?$")
_USER = re.compile(r"^[A-Za-z0-9._-]+$")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class RepositoryRefused(ValueError):
    """The repository breaks the policy; the message says which rule, for the member."""


@dataclass(frozen=True)
class Repository:
    """A repository the policy admits: what to hand git, and what git will touch."""

    kind: Literal["remote", "local"]
    url: str  # the argument for `git clone`
    host: str = ""  # remote only
    port: int | None = None  # remote only, when the URL names one
    # The addresses the host was checked at (when resolved): git is pinned to them, so a
    # second lookup (DNS rebinding) cannot send the clone elsewhere.
    addresses: tuple[str, ...] = ()
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
        _require_scheme("ssh")
        user, host = scp.group("user"), scp.group("host")
        if user is not None and not _USER.match(user):
            raise RepositoryRefused("the repository's user name is malformed")
        if host.startswith("["):  # only an IPv6 literal; ssh would read [host:port]
            host = host[1:-1]
            _ip_literal(host, required=True)
        if scp.group("path").startswith("-"):
            raise RepositoryRefused("a repository path may not start with '-'")
        addresses = _check_host(host, resolve=resolve_hosts)
        return Repository("remote", value, host=host, addresses=addresses)
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
        port = parts.port
    except ValueError:
        raise RepositoryRefused("the repository URL is malformed") from None
    if not host:
        raise RepositoryRefused("a repository URL must name a host")
    userinfo, _, _ = parts.netloc.rpartition("@")
    if "@" in userinfo or "%" in parts.netloc.rpartition("@")[2]:
        raise RepositoryRefused("the repository URL's host part is malformed")
    addresses = _check_host(host, resolve=resolve_hosts)
    return Repository("remote", value, host=host, port=port, addresses=addresses)


def _ip_literal(host: str, *, required: bool = False) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        if required:
            raise RepositoryRefused("the repository's host is malformed") from None
        return None


def _check_host(host: str, *, resolve: bool) -> tuple[str, ...]:
    """Refuse a malformed host, or one on this host's own network; the addresses it was
    checked at (none when not resolved)."""
    literal = _ip_literal(host)
    if literal is None and not _HOSTNAME.match(host):
        raise RepositoryRefused("the repository's host is malformed")
    if settings.WORKBENCH_REPOSITORY_ALLOW_PRIVATE_HOSTS:
        return (str(literal),) if literal else ()
    name = host.lower().rstrip(".")
    if name in {"localhost", "localhost.localdomain"} or name.endswith(".localhost"):
        raise RepositoryRefused("repositories on this host's own network are not allowed")
    if literal is not None:
        addresses = [literal]
    elif resolve:
        addresses = _resolved(host)
        if not addresses:  # fail closed: a name that resolves nowhere is not checked
            raise RepositoryRefused("the repository's host name does not resolve")
    else:
        return ()
    if not all(_public(address) for address in addresses):
        raise RepositoryRefused("repositories on this host's own network are not allowed")
    return tuple(str(address) for address in addresses)


def _public(address: IPAddress) -> bool:
    """A global address, including the IPv4 address an IPv6 one carries (mapped, 6to4,
    NAT64), which Python's is_global does not look into."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and not embedded.is_global:
            return False
    return address.is_global


def _resolved(host: str) -> list[IPAddress]:
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


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


def check_local_contents(path: Path) -> None:
    """Refuse a local repository that reads objects from elsewhere: a `.git` file
    (gitdir: ...) or alternates can point outside the allowed roots, into a sandbox."""
    gitdir = path / ".git"
    if gitdir.is_file() or gitdir.is_symlink():
        raise RepositoryRefused("a local repository may not be a link to another one")
    for objects in (gitdir / "objects", path / "objects"):
        info = objects / "info"
        if (info / "alternates").exists() or (info / "http-alternates").exists():
            raise RepositoryRefused("a local repository may not borrow another's objects")
