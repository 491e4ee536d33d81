"""The local provider with and without confinement, driving real sandbox-agent servers: both
give a working sandbox; unconfined is never silent; `bwrap` required means no sandbox
without it."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sandboxes.agent_client import AgentServerClient
from sandboxes.providers import confinement
from sandboxes.providers.base import SandboxSpec
from sandboxes.providers.local import LocalProvider


def no_steps(name: str) -> contextlib.AbstractContextManager[Callable[[str], None]]:
    """No step recorded; what a step prints goes nowhere."""
    return contextlib.nullcontext(lambda line: None)


@pytest.fixture
def provider(tmp_path: Path, settings) -> Iterator[LocalProvider]:
    root = Path(tempfile.mkdtemp(prefix="workbench-confinement-"))
    root.chmod(0o711)  # not under pytest's 0700 tmp: sandboxes' own uids traverse it
    settings.WORKBENCH_REPOSITORY_ROOTS = [str(tmp_path)]
    settings.WORKBENCH_SANDBOX_ROOT = root
    made = LocalProvider(root=root)
    yield made
    for base in made.root.iterdir() if made.root.exists() else []:
        made.destroy(base.name, None)
    shutil.rmtree(root, ignore_errors=True)


def make_repository(path: Path) -> None:
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    (path / "README").write_text("hello")
    subprocess.run(["git", "-C", str(path), "add", "README"], check=True)
    subprocess.run(
        ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"],
        check=True,
    )


@pytest.mark.parametrize("isolation", ["bwrap", "none"])
def test_a_sandbox_clones_starts_and_opens_a_session(provider, settings, tmp_path, isolation):
    if isolation == "bwrap" and confinement.probe_problem():
        pytest.skip(confinement.probe_problem())
    settings.WORKBENCH_SANDBOX_ISOLATION = isolation
    make_repository(tmp_path / "repo")
    spec = SandboxSpec(
        key=f"c-{isolation}", repository=str(tmp_path / "repo"), branch="main", agent="mock"
    )
    handle = provider.create(spec, step=no_steps)
    assert (Path(handle.workdir) / "README").read_text() == "hello"
    assert handle.base_url.startswith("unix:") == (isolation == "bwrap")
    assert provider.health(handle)
    session = provider.create_session(handle, server_id="tab-x-1", agent="mock", cwd=handle.workdir)
    assert session
    with AgentServerClient(handle.base_url, handle.token) as client:
        ran = client.run_process("sh", ["-c", "pwd; id -u"], timeout=10)
    expected_uid = str(confinement.SANDBOX_UID) if isolation == "bwrap" else str(os.getuid())
    assert ran["stdout"].split() == [handle.workdir, expected_uid]
    provider.destroy(spec.key, handle)
    assert not provider.health(handle)
    assert not (provider.root / spec.key).exists()


def test_an_unconfined_sandbox_is_announced_loudly(provider, settings, caplog):
    settings.WORKBENCH_SANDBOX_ISOLATION = "none"
    with caplog.at_level(logging.WARNING, logger="sandboxes.providers.confinement"):
        handle = provider.create(
            SandboxSpec(key="loud", repository="", branch="", agent="mock"), step=no_steps
        )
    provider.destroy("loud", handle)
    assert any("RUNS UNCONFINED" in record.getMessage() for record in caplog.records)


def test_required_confinement_refuses_to_start_without_bwrap(provider, settings, monkeypatch):
    settings.WORKBENCH_SANDBOX_ISOLATION = "bwrap"
    monkeypatch.setattr(confinement, "_probe", lambda: "bubblewrap (bwrap) is not installed")
    with pytest.raises(confinement.IsolationUnavailable):
        provider.create(
            SandboxSpec(key="strict", repository="", branch="", agent="mock"), step=no_steps
        )
    assert not (provider.root / "strict" / "server.pid").exists()


def test_a_session_closed_right_after_it_was_made_is_gone(provider, settings):
    """sandbox-agent may never answer a DELETE of a server made moments before; waiting
    for the answer held a session worker for the client timeout (closing 4 pending tabs
    stalled another tenant's tab by 5 s). The close must return, with the server gone."""
    settings.WORKBENCH_SANDBOX_ISOLATION = "auto"
    handle = provider.create(
        SandboxSpec(key="closing", repository="", branch="", agent="mock"), step=no_steps
    )
    for n in range(3):
        server_id = f"tab-close-{n}"
        provider.create_session(handle, server_id=server_id, agent="mock", cwd=handle.workdir)
        provider.destroy_session(handle, server_id=server_id)  # raised ProviderUnavailable
        with AgentServerClient(handle.base_url, handle.token) as client:
            assert server_id not in client.list_servers()
    provider.destroy("closing", handle)
