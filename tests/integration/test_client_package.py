"""Issue 18: the client package, installed on its own into a fresh virtualenv (no Django, no
repository on its path), drives the real stack: the `workbench` command line (login, tasks,
a tab made ready with its provisioning shown, a prompt answered, the event tail, error exit
codes) and the Python API (sync and async, the websocket's refusals)."""

from __future__ import annotations

import json
import os
import queue
import shutil
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import IO

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _worker(celery_worker) -> None:
    """Every test here needs the session's worker."""


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with only `pip install ./workbench_client` in it (pip's cache is
    reused, so httpx and websockets come from PyPI once per machine)."""
    root = tmp_path_factory.mktemp("client")
    # A copy: pip builds in place, and the repository's tree stays as it is.
    source = root / "workbench_client"
    shutil.copytree(
        REPO / "workbench_client",
        source,
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"),
    )
    venv = root / "venv"
    # No ensurepip in the new venv (seconds saved): this pip installs into it with --python.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--disable-pip-version-check",
            "--quiet",
            str(source),
        ],
        check=True,
        timeout=240,
        env={k: v for k, v in os.environ.items() if k != "PIP_NO_CACHE_DIR"},
    )
    return venv


def clean_env(home: Path) -> dict[str, str]:
    """An environment with none of the service's settings and a private config dir."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "LANG": "C.UTF-8",
    }


class Cli:
    """The installed `workbench`, run in a private home (its credentials file)."""

    def __init__(self, venv: Path, home: Path) -> None:
        self.exe = str(venv / "bin" / "workbench")
        self.home = home
        self.env = clean_env(home)

    def __call__(
        self, *argv: str, stdin: str = "", timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.exe, *argv],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.home,
            env=self.env,
        )

    def json(self, *argv: str, timeout: float = 120) -> object:
        done = self("--json", *argv, timeout=timeout)
        assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
        return json.loads(done.stdout)


class Lines:
    """A process's output lines, read by a thread: wait for one with a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, predicate, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                raise AssertionError(f"no such line after {timeout}s; seen: {self.seen}") from None
            if line is None:
                raise AssertionError(f"the output ended; seen: {self.seen}")
            self.seen.append(line)
            if predicate(line):
                return line


def set_password(username: str, password: str) -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    # Daphne checks passwords with Django's default hashers, which do not include the MD5 one
    # this process uses: store a (cheap, few-iteration) PBKDF2 hash, as tests/e2e does.
    hasher = PBKDF2PasswordHasher()
    user = get_user_model().objects.get(username=username)
    user.password = hasher.encode(password, hasher.salt(), iterations=1000)
    user.save(update_fields=["password"])


def test_the_installed_cli_logs_in_opens_a_tab_answers_a_prompt_and_tails_events(
    member, client_venv, tmp_path
):
    set_password("member", "s3cret")
    cli = Cli(client_venv, tmp_path)
    python = client_venv / "bin" / "python"
    alone = subprocess.run(
        [str(python), "-c", "import workbench_client, sys; print(workbench_client.__file__)\n"
         "try:\n import django\nexcept ImportError: print('no django')"],
        capture_output=True, text=True, cwd=tmp_path, env=clean_env(tmp_path), check=True,
    )  # fmt: skip
    assert alone.stdout.splitlines() == [
        str(next(client_venv.glob("lib/python*/site-packages/workbench_client/__init__.py"))),
        "no django",
    ]

    # Not logged in yet: the auth exit code. Then log in; the token is kept 0600.
    assert cli("workspaces").returncode == 3
    login = cli(
        "--url", member["http"], "login", "-u", "member", "--password-stdin", stdin="s3cret\n"
    )
    assert login.returncode == 0, login.stderr
    credentials = tmp_path / "config" / "workbench" / "credentials.json"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert (
        json.loads(credentials.read_text())["services"][member["http"]]["token"] == member["token"]
    )
    wrong = cli("--url", member["http"], "login", "-u", "member", "--password-stdin", stdin="no\n")
    assert wrong.returncode == 3

    # From here on, the stored URL and token.
    assert [w["id"] for w in cli.json("workspaces")] == [member["workspace"]]
    task = cli.json("tasks", "create", "from the cli")  # the only workspace: no -w needed
    assert task["workspace"] == member["workspace"] and task["first_tab"] is None
    assert [t["id"] for t in cli.json("tasks", "list")] == [task["id"]]

    tail = subprocess.Popen(
        [cli.exe, "--json", "tail", str(member["workspace"]), "--timeout", "90"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=cli.env,
    )  # fmt: skip
    try:
        events, notes = Lines(tail.stdout), Lines(tail.stderr)
        notes.wait_for(lambda line: line.startswith("following workspace"), timeout=30)

        opened = cli("tab", "open", str(task["id"]), "--wait", "--json", "--timeout", "90")
        assert opened.returncode == 0, opened.stderr
        tab = json.loads(opened.stdout)
        assert tab["state"] == "ready" and tab["task"] == task["id"]
        progress = opened.stderr.splitlines()
        assert progress[0].startswith(f"tab {tab['id']} opened")
        assert any(line.startswith("plan: ") and "start_server" in line for line in progress)
        assert any(line.strip().startswith("ok start_server") for line in progress), progress
        assert progress[-1].startswith(f"tab {tab['id']}: ready")

        sent = cli("send", tab["id"], "hello from the command line", timeout=120)
        assert sent.returncode == 0, sent.stderr
        assert "hello from the command line" in sent.stdout  # the mock agent echoes it

        ready = events.wait_for(
            lambda line: (
                (e := json.loads(line))["event"] == "tab.updated"
                and e["data"]["id"] == tab["id"]
                and e["data"]["state"] == "ready"
            ),
            timeout=30,
        )
        answered = events.wait_for(
            lambda line: (
                (e := json.loads(line))["event"].startswith("message.")
                and e["data"]["role"] == "agent"
                and e["data"]["state"] == "complete"
            ),
            timeout=30,
        )
        assert json.loads(answered)["seq"] > json.loads(ready)["seq"]
        assert "hello from the command line" in json.loads(answered)["data"]["text"]
    finally:
        tail.terminate()
        tail.wait(timeout=30)

    transcript = cli.json("messages", tab["id"])
    assert [(m["role"], m["state"]) for m in transcript] == [
        ("user", "complete"),
        ("agent", "complete"),
    ]

    # Errors: a closed tab refuses prompts (409 tab_closed, exit 1), an unknown one is 404
    # (exit 4), a bad token 401 (exit 3).
    assert cli("close", tab["id"]).returncode == 0
    refused = cli("--json", "send", tab["id"], "too late")
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["error"] | {"message": ""} == {
        "code": "tab_closed", "message": "", "fields": {}, "status": 409,
    }  # fmt: skip
    missing = cli("--json", "tab", "show", "00000000-0000-0000-0000-000000000000")
    assert (
        missing.returncode == 4 and json.loads(missing.stdout)["error"]["code"] == "tab_not_found"
    )
    bad = cli("--json", "--token", "0" * 40, "workspaces")
    assert bad.returncode == 3 and json.loads(bad.stdout)["error"]["status"] == 401
    archived = cli.json("archive", str(task["id"]))
    assert archived["archived"] is True


SCRIPT = """
import asyncio, json, sys
from workbench_client import (
    AsyncWorkbench, AuthenticationError, NotFound, Workbench, WorkbenchClient,
)

url, workspace = sys.argv[1], int(sys.argv[2])
out = {}
with Workbench(url) as wb:
    wb.login("member", "s3cret")
    task = wb.create_task(workspace, "from python", prompt="first words")
    first = task["first_tab"]
    out["first"] = [first["state"], task["first_message"]["state"]]
    progress = []
    ready = wb.wait_for_tab(first, timeout=90, on_progress=lambda name, data: progress.append(name))
    out["ready"] = [ready["state"], "provisioning.step" in progress]
    reply = wb.send(first["id"], "second words", timeout=90)
    out["reply"] = [reply["state"], "second words" in reply["text"]]
    out["transcript"] = [m["role"] for m in wb.messages(first["id"])]
    out["tasks"] = [t["id"] for t in wb.tasks(workspace)] == [task["id"]]
    token = wb.token


async def with_asyncio():
    async with AsyncWorkbench(url, token=token) as wb:
        tab = await wb.open_tab(task["id"], wait="ready", timeout=90)
        reply = await wb.send(tab["id"], "async words", timeout=90)
        out["async"] = [tab["state"], reply["state"], "async words" in reply["text"]]
        async with WorkbenchClient(wb.ws_url(workspace), token=token) as stream:
            await wb.send(tab["id"], "watched", wait=False)
            await stream.wait_for(
                lambda m: any(x["state"] == "complete" and x["role"] == "agent"
                              for x in m.transcript(tab["id"])), timeout=60)
            out["model"] = [m["role"] for m in stream.model.transcript(tab["id"])]
        refusals = [("bad_token", "0" * 40, workspace), ("foreign", token, 999999)]
        for name, ws_token, ws_id in refusals:
            try:
                async with WorkbenchClient(wb.ws_url(ws_id), token=ws_token):
                    out[name] = "connected"
            except AuthenticationError as exc:
                out[name] = ["AuthenticationError", exc.status]
            except NotFound as exc:
                out[name] = ["NotFound", exc.status, exc.code]

asyncio.run(with_asyncio())
print(json.dumps(out))
"""


def test_the_installed_python_api_waits_for_ready_returns_replies_and_tells_refusals_apart(
    member, client_venv, tmp_path
):
    set_password("member", "s3cret")
    script = tmp_path / "drive.py"
    script.write_text(textwrap.dedent(SCRIPT))
    python = str(client_venv / "bin" / "python")
    done = subprocess.run(
        [python, str(script), member["http"], str(member["workspace"])],
        capture_output=True, text=True, timeout=240, cwd=tmp_path, env=clean_env(tmp_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["first"] == ["pending_provision", "queued"]
    assert out["ready"] == ["ready", True]
    assert out["reply"] == ["complete", True]
    # The create's prompt too (a prompt queued during a turn may come before that turn's reply).
    assert sorted(out["transcript"]) == ["agent", "agent", "user", "user"]
    assert out["tasks"] is True
    assert out["async"] == ["ready", "complete", True]
    assert out["model"] == ["user", "agent"]  # what the socket saw: the watched prompt
    assert out["bad_token"] == ["AuthenticationError", 401]
    assert out["foreign"] == ["NotFound", 404, "workspace_not_found"]
