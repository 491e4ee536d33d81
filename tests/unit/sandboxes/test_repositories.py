"""The repository policy: what a member may have cloned, and what is refused and why."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings as django_settings

from sandboxes.repositories import RepositoryRefused, check_repository


@pytest.fixture
def roots(settings, tmp_path: Path) -> Path:
    settings.WORKBENCH_REPOSITORY_ROOTS = [str(tmp_path)]
    settings.WORKBENCH_SANDBOX_ROOT = tmp_path / "sandboxes"
    return tmp_path


@pytest.mark.parametrize(
    "value",
    [
        "https://github.com/octo/repo.git",
        "ssh://git@github.com/octo/repo.git",
        "git@github.com:octo/repo.git",
        "https://93.184.215.14/repo.git",
    ],
)
def test_public_remote_urls_of_allowed_schemes_are_admitted(value: str) -> None:
    repository = check_repository(value)
    assert repository is not None and repository.kind == "remote"
    assert repository.url == value


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("fd::0", "remote helpers"),
        ("ext::sh -c touch% /tmp/pwned", "remote helpers"),
        ("http://github.com/octo/repo.git", "over http are not allowed"),
        ("git://github.com/octo/repo.git", "over git are not allowed"),
        ("https://127.0.0.1:6399/x", "own network"),
        ("https://localhost/x", "own network"),
        ("https://[::1]/x", "own network"),
        ("https://10.1.2.3/x", "own network"),
        ("https://169.254.169.254/latest/meta-data", "own network"),
        ("git@127.0.0.1:repo.git", "own network"),
        ("-uupload-pack=touch /tmp/x", "start with '-'"),
        (" https://github.com/x", "spaces"),
        ("https://github.com/x\n", "control characters"),
        ("https://github.com:notaport/x", "malformed"),
        ("https:///x", "name a host"),
        # Read differently by curl or ssh than by a URL parser (a security review's finds).
        ("https://%31%32%37.0.0.1:4443/x", "malformed"),
        ("https://127%2e0%2e0%2e1:4443/x", "malformed"),
        ("git@[127.0.0.1:2222]:x", "malformed"),
        ("[127.0.0.1:2222]:x", "malformed"),
        ("git@[localhost:22]:x", "malformed"),
        ("a@b@127.0.0.1:x", "malformed"),
        ("https://a@b@github.com/x", "malformed"),
        ("https://github.com@127.0.0.1/x", "own network"),
        ("https://[::ffff:127.0.0.1]/x", "own network"),
        ("https://[64:ff9b::7f00:1]/x", "own network"),
        ("https://[2002:7f00:1::]/x", "own network"),
    ],
)
def test_remote_urls_breaking_the_policy_are_refused_with_the_rule(value: str, rule: str) -> None:
    with pytest.raises(RepositoryRefused, match=rule):
        check_repository(value)


def test_a_name_resolving_to_loopback_is_refused_when_hosts_are_resolved(monkeypatch) -> None:
    import socket

    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: [(0, 0, 0, "", ("127.0.0.1", 0))])
    assert check_repository("https://rebind.example/x") is not None  # the API does not wait on DNS
    with pytest.raises(RepositoryRefused, match="own network"):
        check_repository("https://rebind.example/x", resolve_hosts=True)


def test_a_name_that_does_not_resolve_is_refused_when_hosts_are_resolved(monkeypatch) -> None:
    import socket

    def nowhere(*args, **kwargs):
        raise socket.gaierror("no such name")

    monkeypatch.setattr(socket, "getaddrinfo", nowhere)
    with pytest.raises(RepositoryRefused, match="does not resolve"):
        check_repository("https://nowhere.example/x", resolve_hosts=True)


def test_resolved_addresses_are_kept_for_pinning(monkeypatch) -> None:
    import socket

    monkeypatch.setattr(
        socket, "getaddrinfo", lambda *a, **k: [(0, 0, 0, "", ("93.184.215.14", 0))]
    )
    repository = check_repository("https://example.org:8443/x.git", resolve_hosts=True)
    assert repository is not None
    assert (repository.addresses, repository.port) == (("93.184.215.14",), 8443)


def test_a_local_repository_that_borrows_from_elsewhere_is_refused(roots: Path) -> None:
    from sandboxes.repositories import check_local_contents

    linked = roots / "linked"
    linked.mkdir()
    (linked / ".git").write_text("gitdir: /elsewhere/.git\n")
    with pytest.raises(RepositoryRefused, match="link to another"):
        check_local_contents(linked)
    borrowing = roots / "borrowing"
    (borrowing / ".git" / "objects" / "info").mkdir(parents=True)
    (borrowing / ".git" / "objects" / "info" / "alternates").write_text("/elsewhere\n")
    with pytest.raises(RepositoryRefused, match="borrow"):
        check_local_contents(borrowing)
    plain = roots / "plain"
    (plain / ".git" / "objects" / "info").mkdir(parents=True)
    check_local_contents(plain)


def test_private_hosts_can_be_allowed_explicitly(settings) -> None:
    settings.WORKBENCH_REPOSITORY_ALLOW_PRIVATE_HOSTS = True
    assert check_repository("https://127.0.0.1:8443/x") is not None


def test_local_paths_are_admitted_only_under_a_root(roots: Path) -> None:
    inside = roots / "team" / "repo"
    admitted = check_repository(str(inside))
    assert admitted is not None and admitted.kind == "local" and admitted.path == inside
    assert check_repository(f"file://{inside}").path == inside
    with pytest.raises(RepositoryRefused, match="under an allowed root"):
        check_repository("/etc")
    with pytest.raises(RepositoryRefused, match="absolute path"):
        check_repository(".")
    with pytest.raises(RepositoryRefused, match="under an allowed root"):
        check_repository(f"{roots}/../../etc")


def test_the_sandbox_root_and_the_service_tree_are_never_admitted(roots: Path, settings) -> None:
    settings.WORKBENCH_REPOSITORY_ROOTS = ["/"]
    for forbidden in (
        roots / "sandboxes" / "t2-1" / "work",
        Path(django_settings.BASE_DIR),
        Path(django_settings.BASE_DIR) / "var" / "db.sqlite3",
    ):
        with pytest.raises(RepositoryRefused, match="under an allowed root"):
            check_repository(str(forbidden))
        with pytest.raises(RepositoryRefused, match="under an allowed root"):
            check_repository(f"file://{forbidden}")


def test_a_symlink_under_a_root_into_a_sandbox_is_refused(roots: Path) -> None:
    target = roots / "sandboxes" / "t2-1" / "work"
    target.mkdir(parents=True)
    link = roots / "innocent"
    link.symlink_to(target)
    with pytest.raises(RepositoryRefused, match="under an allowed root"):
        check_repository(str(link))


def test_no_roots_means_no_local_repositories(settings) -> None:
    settings.WORKBENCH_REPOSITORY_ROOTS = []
    with pytest.raises(RepositoryRefused, match="local repositories are not allowed"):
        check_repository("/srv/repo")
    with pytest.raises(RepositoryRefused, match="local repositories are not allowed"):
        check_repository("file:///srv/repo")
