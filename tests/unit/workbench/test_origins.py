"""Which browser Origins may open a websocket: scheme, host and port compared exactly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.origins import Origin, origin_allowed, parse_origin

ROOT = Path(__file__).resolve().parents[3]
HOSTS = ["localhost", "127.0.0.1", "[::1]"]


def allowed(
    origin: str, host: str | None, *, secure: bool = False, trusted: list[str] | None = None
) -> bool:
    return origin_allowed(
        origin,
        host_header=host,
        secure=secure,
        trusted_origins=trusted or [],
        allowed_hosts=HOSTS,
    )


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("http://localhost:8000", Origin("http", "localhost", 8000)),
        ("HTTP://LocalHost", Origin("http", "localhost", 80)),
        ("https://example.com", Origin("https", "example.com", 443)),
        ("https://example.com:443/", Origin("https", "example.com", 443)),
        ("http://[::1]:8000", Origin("http", "::1", 8000)),
        ("null", None),
        ("file://", None),
        ("ftp://example.com", None),
        ("http://user@example.com", None),
        ("http://example.com/path", None),
        ("http://example.com:99999", None),
        ("", None),
    ],
)
def test_it_parses_an_origin_with_its_port_made_explicit(value, parsed):
    assert parse_origin(value) == parsed


def test_the_service_own_origin_is_allowed_port_included():
    assert allowed("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert allowed("http://localhost", "localhost")
    assert allowed("http://localhost:80", "localhost")
    assert allowed("http://[::1]:8000", "[::1]:8000")
    assert allowed("https://localhost:8443", "localhost:8443", secure=True)


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://127.0.0.1:3000", "127.0.0.1:8000"),  # another local port: the attack
        ("http://127.0.0.1", "127.0.0.1:8000"),
        ("http://localhost:8000", "127.0.0.1:8000"),  # another host name
        ("https://127.0.0.1:8000", "127.0.0.1:8000"),  # another scheme than the socket's
        ("http://evil.example:8000", "evil.example:8000"),  # a host not in ALLOWED_HOSTS
        ("http://testserver", "testserver"),
        ("http://127.0.0.1:8000", None),  # no Host header: nothing to be the same as
    ],
)
def test_any_other_origin_is_refused(origin, host):
    assert not allowed(origin, host)


def test_a_secure_socket_needs_an_https_origin():
    assert not allowed("http://localhost:8443", "localhost:8443", secure=True)


def test_trusted_origins_are_allowed_exactly():
    trusted = ["https://workbench.example.com"]
    assert allowed("https://workbench.example.com", "10.0.0.5:8000", trusted=trusted)
    assert allowed("https://workbench.example.com:443", None, trusted=trusted)
    assert not allowed("https://workbench.example.com:8443", None, trusted=trusted)
    assert not allowed("http://workbench.example.com", None, trusted=trusted)
    assert not allowed("https://other.example.com", None, trusted=trusted)


def test_testserver_is_not_an_allowed_host_by_default_outside_tests():
    env = {k: v for k, v in os.environ.items() if k != "WORKBENCH_ALLOWED_HOSTS"}
    result = subprocess.run(
        [sys.executable, "-c", "import config.settings as s; print(s.ALLOWED_HOSTS)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=env,
    )
    assert "localhost" in result.stdout
    assert "testserver" not in result.stdout
