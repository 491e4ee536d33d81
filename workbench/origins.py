"""Which browser Origins may open a websocket: the same rule Django's CSRF check applies to
a POST, with scheme, host and port compared exactly.

Channels' OriginValidator compares the Origin's host with ALLOWED_HOSTS and ignores the
port, so a page served by anything else on the same host (another port of localhost, say)
could open the stream with the user's cookie. Here an Origin is allowed only if it is

1. one of CSRF_TRUSTED_ORIGINS (WORKBENCH_TRUSTED_ORIGINS), or
2. the request's own origin: the scheme the socket came in on (http for ws, https for wss
   or behind SECURE_PROXY_SSL_HEADER) and its Host header, port included, where that host is
   one of ALLOWED_HOSTS.
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import urlsplit

from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}


class Origin(NamedTuple):
    scheme: str
    host: str
    port: int


def parse_origin(value: str) -> Origin | None:
    """`scheme://host[:port]` with the port made explicit; None for anything else
    (including the opaque origin `null` and URLs with a path, credentials or query)."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname or parts.username is not None:
        return None
    if parts.path not in {"", "/"} or parts.query or parts.fragment:
        return None
    return Origin(scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme])


def own_origin(host_header: str, *, secure: bool, allowed_hosts: list[str]) -> Origin | None:
    """The origin a request to `host_header` came to, if that host is an allowed one."""
    domain, port = split_domain_port(host_header.strip().lower())
    if not domain or not validate_host(domain, allowed_hosts):
        return None
    scheme = "https" if secure else "http"
    if not port:
        return Origin(scheme, domain.strip("[]"), DEFAULT_PORTS[scheme])
    return Origin(scheme, domain.strip("[]"), int(port)) if port.isdigit() else None


def origin_allowed(
    origin: str,
    *,
    host_header: str | None,
    secure: bool,
    trusted_origins: list[str],
    allowed_hosts: list[str],
) -> bool:
    """Whether a browser on `origin` may open a socket on this request (see the module)."""
    claimed = parse_origin(origin)
    if claimed is None:
        return False
    if any(parse_origin(trusted) == claimed for trusted in trusted_origins):
        return True
    if host_header is None:
        return False
    return own_origin(host_header, secure=secure, allowed_hosts=allowed_hosts) == claimed
