"""How every provider runs git for a member's repository: the policy checked again, an
environment that gives git nothing of the service's, and errors that name no host detail."""

from __future__ import annotations

import logging
import re

from sandboxes.providers.base import ProviderError
from sandboxes.repositories import (
    Repository,
    RepositoryRefused,
    check_local_contents,
    check_repository,
)

logger = logging.getLogger(__name__)

# git must never ask (no terminal), never read the host's config or credentials, and give
# up on a server that trickles: a stalled clone would otherwise hold a provisioning slot for
# the whole clone timeout.
_BASE_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ASKPASS": "/bin/false",
    "SSH_ASKPASS": "/bin/false",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_HTTP_LOW_SPEED_LIMIT": "1000",
    "GIT_HTTP_LOW_SPEED_TIME": "30",
    "GIT_SSH_COMMAND": (
        "ssh -o BatchMode=yes -o ConnectTimeout=20 -o ServerAliveInterval=15 "
        "-o ServerAliveCountMax=2 -o StrictHostKeyChecking=accept-new"
    ),
    "LANG": "C.UTF-8",
}
_BRANCH_MISSING = re.compile(r"Remote branch .* not found", re.IGNORECASE)


def admitted(repository: str) -> Repository | None:
    """The repository as the policy admits it now (hosts looked up, a local one's contents
    looked at), else a ProviderError."""
    try:
        admitted = check_repository(repository, resolve_hosts=True)
        if admitted is not None and admitted.path is not None:
            check_local_contents(admitted.path)
    except RepositoryRefused as exc:
        raise ProviderError(f"repository refused: {exc}", code="repository_refused") from None
    return admitted


def git_env(repository: Repository | None, *, home: str) -> dict[str, str]:
    """The whole environment for git: nothing inherited from the service's processes."""
    env = {**_BASE_ENV, "HOME": home, "PATH": "/usr/local/bin:/usr/bin:/bin"}
    # No protocol at all for `git init`; only the one the clone needs otherwise.
    env["GIT_ALLOW_PROTOCOL"] = repository.protocols if repository else "none"
    if repository is not None and repository.kind == "remote" and repository.addresses:
        # ssh connects to the address the policy checked, not to a second lookup's.
        env["GIT_SSH_COMMAND"] += f" -o HostName={repository.addresses[0]}"
    if repository is not None and repository.kind == "local":
        # A local repository under an allowed root may belong to another user than the one
        # git runs as in the sandbox; the root was chosen by the operator.
        env.update(
            {
                "GIT_CONFIG_COUNT": "1",
                "GIT_CONFIG_KEY_0": "safe.directory",
                "GIT_CONFIG_VALUE_0": "*",
            }
        )
    return env


# The lines of git's progress a member may watch live: counts and percentages of their own
# clone. Everything else git prints (paths, hosts, errors) goes to the operators' log only.
PROGRESS = re.compile(
    r"^(remote: (Enumerating|Counting|Compressing) objects|remote: Total|Receiving objects"
    r"|Resolving deltas|Updating files)"
)


def cloning_line(repository: str, branch: str) -> str:
    """The clone's first log line, without the URL's credentials (`user:token@`)."""
    shown = re.sub(r"^([a-z][a-z0-9+.-]*://)[^/@]*@", r"\1", repository, flags=re.IGNORECASE)
    return f"Cloning {shown}" + (f" at {branch}" if branch else "")


def empty_line(branch: str) -> str:
    return f"No repository: an empty git repository on {branch or 'main'}"


def clone_args(
    repository: Repository, branch: str, target: str, *, progress: bool = False
) -> list[str]:
    branch_args = ["--branch", branch] if branch else []
    # No redirects: a public host could answer with one into this host's own network.
    config = ["-c", "core.hooksPath=/dev/null", "-c", "http.followRedirects=false"]
    if repository.kind == "remote" and repository.addresses:
        # curl connects to the addresses the policy checked (DNS rebinding gets nowhere).
        port = repository.port or 443
        pinned = ",".join(f"[{a}]" if ":" in a else a for a in repository.addresses)
        config += ["-c", f"http.curloptResolve={repository.host}:{port}:{pinned}"]
    local = ["--no-hardlinks"] if repository.kind == "local" else []
    return [
        *config,
        "clone",
        # git reports progress only to a terminal unless asked; the live log reads it.
        "--progress" if progress else "--quiet",
        "--no-recurse-submodules",
        "--template=",
        *local,
        *branch_args,
        "--",
        repository.url,
        target,
    ]


def clone_failed(stderr: str, *, branch: str, key: str) -> ProviderError:
    """The member-facing error for a failed clone. git's own words say which host paths
    exist and which ports answer (an oracle for probing the service's network), so they go
    to the operators' log only."""
    logger.info("clone for sandbox %s failed: %s", key, stderr.strip()[-2000:])
    if branch and _BRANCH_MISSING.search(stderr):
        return ProviderError(
            f"git clone failed: branch {branch!r} not found in the repository", code="clone_failed"
        )
    return ProviderError(
        "git clone failed: the repository does not exist, cannot be reached, or needs "
        "credentials this service does not have",
        code="clone_failed",
    )
