"""`workbench`: the Workbench API from the command line (on top of `Workbench`, rest.py).

Credentials: `workbench login` keeps the token, per service URL, in
$XDG_CONFIG_HOME/workbench/credentials.json (~/.config/... by default; mode 0600).
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from workbench_client import __version__
from workbench_client.errors import (
    AuthenticationError,
    BadRequest,
    ConnectionFailed,
    NotFound,
    PromptFailed,
    TabClosed,
    TabFailed,
    WaitTimeout,
    WorkbenchAPIError,
    WorkbenchError,
)
from workbench_client.rest import Workbench

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["EXIT_CODES", "main"]

DEFAULT_URL = "http://127.0.0.1:8000"

EXIT_OK = 0
EXIT_ERROR = 1  # the API refused (e.g. 409 tab_closed), a tab failed, a reply failed
EXIT_USAGE = 2  # bad arguments (argparse's own code)
EXIT_AUTH = 3  # not logged in, a bad token (401), wrong username or password
EXIT_NOT_FOUND = 4  # 404: no such object, or not in a workspace you are a member of
EXIT_TIMEOUT = 5  # a wait (--wait, send, tail --timeout) passed its deadline
EXIT_UNREACHABLE = 6  # the service could not be reached

EXIT_CODES = {
    EXIT_OK: "success",
    EXIT_ERROR: "the API refused the request, the tab failed, or the reply failed",
    EXIT_USAGE: "bad usage (arguments), or no workspace given where several are yours",
    EXIT_AUTH: "not logged in, bad token (401) or wrong username/password",
    EXIT_NOT_FOUND: "not found (404): no such object, or not in your workspaces",
    EXIT_TIMEOUT: "timed out waiting (a tab, a reply, tail --timeout)",
    EXIT_UNREACHABLE: "the service could not be reached",
}

EPILOG = (
    "exit codes:\n"
    + "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_CODES.items())
    + "\n\nenvironment: WORKBENCH_URL, WORKBENCH_TOKEN, WORKBENCH_WORKSPACE; credentials in "
    "$XDG_CONFIG_HOME/workbench/credentials.json (mode 0600).\n"
    'With --json, results (and errors, as {"error": {code, message, fields, status}}) are '
    "printed as JSON on stdout."
)


class UsageError(Exception):
    """Bad usage the parser could not see (exit code 2)."""


# -- credentials ---------------------------------------------------------------------------


def credentials_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "workbench" / "credentials.json"


def load_credentials() -> dict[str, Any]:
    """{"default": url, "services": {url: {"token", "username"}}}, or empty."""
    path = credentials_path()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_credentials(data: dict[str, Any]) -> Path:
    """Write the credentials readable by their owner only (0600, in a 0700 directory)."""
    path = credentials_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Made 0600 before any secret is written: never briefly world-readable.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)
        json.dump(data, out, indent=2)
    return path


def _normal(url: str) -> str:
    return url.rstrip("/")


def resolve(args: argparse.Namespace) -> tuple[str, str | None]:
    """The service URL and token: flags, then the environment, then `workbench login`'s."""
    stored = load_credentials()
    url = _normal(
        args.url or os.environ.get("WORKBENCH_URL") or stored.get("default") or DEFAULT_URL
    )
    token = args.token or os.environ.get("WORKBENCH_TOKEN")
    if not token:
        # A token is only ever sent to the service it was issued by.
        token = stored.get("services", {}).get(url, {}).get("token")
    return url, token


# -- output --------------------------------------------------------------------------------


# C0 controls but newline and tab, DEL, and C1 controls: an agent's reply or a task's title
# is somebody's text, and a terminal would act on them (clear the screen, set the title,
# OSC 52 writes the clipboard).
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class Terminal:
    """A text stream that drops control characters from whatever is written to it."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        return self.stream.write(_CONTROLS.sub("", text))

    def flush(self) -> None:
        self.stream.flush()


class Output:
    """Results to stdout (JSON with --json), progress and diagnostics to stderr; neither
    ever passes a control character from the service to the terminal (JSON escapes them)."""

    def __init__(self, as_json: bool, out: TextIO, err: TextIO) -> None:
        self.as_json = as_json
        self.out = Terminal(out)
        self.err = Terminal(err)

    def result(self, value: Any, text: str | Callable[[], str]) -> None:
        if self.as_json:
            self.out.write(json.dumps(value, indent=2) + "\n")
        else:
            self.out.write((text() if callable(text) else text) + "\n")
        self.out.flush()

    def progress(self, line: str) -> None:
        """A line for people (stderr, --json or not: scripts read stdout)."""
        self.err.write(line + "\n")
        self.err.flush()

    def event(self, frame: dict[str, Any]) -> None:
        """One websocket event: a JSON line with --json, else a short summary."""
        if self.as_json:
            self.out.write(json.dumps(frame) + "\n")
        else:
            self.out.write(f"{frame['seq']:>6} {frame['event']:<18} {_summary(frame)}\n")
        self.out.flush()


def _summary(frame: dict[str, Any]) -> str:
    name, data = frame["event"], frame.get("data", {})
    if name == "tab.updated":
        extra = f" {data['error_code']}: {data['error_message']}" if data.get("error_code") else ""
        return f"tab {data['id']} {data['state']} (task {data['task']}){extra}"
    if name.startswith("message."):
        text = data.get("text", "").replace("\n", " ")
        text = text if len(text) <= 60 else text[:57] + "..."
        return f"tab {data['tab']} {data['role']} #{data['id']} {data['state']}: {text}"
    if name == "task.updated":
        archived = " archived" if data.get("archived") else ""
        return f"task {data['id']} {data['title']!r}{archived}"
    if name == "sandbox.updated":
        return f"sandbox {data['id']} of task {data['task']} {data['state']}"
    if name == "provisioning.step":
        return f"task {data['task']} step {data['name']} {data['outcome']}"
    if name in ("member.updated", "member.removed"):
        return f"user {data.get('username') or data.get('user')} {data.get('role', 'removed')}"
    if name == "tab.user_state":
        return f"tab {data['tab']} " + " ".join(f"{k}={v!r}" for k, v in data.items() if k != "tab")
    return ""


def _seconds(ms: int | None) -> str:
    return "?" if ms is None else f"{ms / 1000:.1f}s"


class ProvisioningDisplay:
    """`tab open --wait`'s progress on stderr: the plan, then each step as it starts and
    ends (with its duration and estimate) and its log's newest line, and the tab's state."""

    def __init__(self, output: Output) -> None:
        self.output = output
        self.plan_shown: int | None = None  # the sandbox whose plan was printed
        self.estimates: dict[str, int | None] = {}
        self.steps: dict[int, tuple[str, str]] = {}  # id -> (outcome, last log line)
        self.tab_state = ""
        self.tab_version = -1
        self.started = time.monotonic()

    def __call__(self, name: str, data: dict[str, Any]) -> None:
        if name == "sandbox.updated":
            if data.get("plan") and self.plan_shown != data["id"]:
                self.plan_shown = data["id"]
                self.estimates = {p["name"]: p.get("estimate_ms") for p in data["plan"]}
                plan = ", ".join(
                    f"{p['name']} (~{_seconds(p.get('estimate_ms'))})" for p in data["plan"]
                )
                self.output.progress(f"plan: {plan}")
            for step in data.get("steps", []):
                self._step(step)
        elif name == "provisioning.step":
            self._step(data)
        elif name == "tab.updated" and data["version"] > self.tab_version:
            # The tab read at the start may be newer than the events the socket replays.
            self.tab_version = data["version"]
            if data["state"] == self.tab_state:
                return
            self.tab_state = data["state"]
            elapsed = time.monotonic() - self.started
            extra = f" {data['error_code']}: {data['error_message']}" if data["error_code"] else ""
            self.output.progress(f"tab {data['id']}: {data['state']}{extra} [{elapsed:.1f}s]")

    def _step(self, step: dict[str, Any]) -> None:
        lines = [line for line in (step.get("log") or "").splitlines() if line.strip()]
        last_line = lines[-1].strip() if lines else ""
        previous = self.steps.get(step["id"])
        if previous is not None and previous[0] != "running" and step["outcome"] == "running":
            return  # replayed, older than the finished state read first (steps have no version)
        self.steps[step["id"]] = (step["outcome"], last_line)
        if previous is None or previous[0] != step["outcome"]:
            estimate = self.estimates.get(step["name"])
            if step["outcome"] == "running":
                hint = f" (~{_seconds(estimate)})" if estimate is not None else ""
                self.output.progress(f"  ... {step['name']}{hint}")
            else:
                mark = "ok" if step["outcome"] == "succeeded" else step["outcome"].upper()
                detail = f": {step['detail']}" if step.get("detail") else ""
                self.output.progress(
                    f"  {mark:>3} {step['name']} {_seconds(step.get('duration_ms'))}{detail}"
                )
        if last_line and (previous is None or previous[1] != last_line):
            self.output.progress(f"      | {last_line}")


# -- commands ------------------------------------------------------------------------------


def _workspace(wb: Workbench, args: argparse.Namespace) -> int:
    chosen = args.workspace or os.environ.get("WORKBENCH_WORKSPACE")
    if chosen:
        return int(chosen)
    mine = list(wb.workspaces())
    if len(mine) == 1:
        return mine[0]["id"]
    names = ", ".join(f"{w['id']} ({w['name']})" for w in mine) or "none"
    raise UsageError(f"pass --workspace: you are a member of {names}")


def cmd_login(wb: Workbench, args: argparse.Namespace, out: Output) -> int:
    username = args.username or input("Username: ")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("Password: ")
    try:
        token = wb.login(username, password)
    except BadRequest as exc:  # the API answers wrong credentials with 400
        raise AuthenticationError(exc.message, code="login_failed", status=exc.status) from exc
    stored = load_credentials()
    services = stored.setdefault("services", {})
    services[wb.base_url] = {"token": token, "username": username}
    stored["default"] = wb.base_url
    path = save_credentials(stored)
    out.result(
        {"url": wb.base_url, "username": username, "credentials": str(path)},
        f"Logged in to {wb.base_url} as {username} (token kept in {path})",
    )
    return EXIT_OK


def cmd_logout(wb: Workbench, args: argparse.Namespace, out: Output) -> int:
    stored = load_credentials()
    stored.get("services", {}).pop(wb.base_url, None)
    save_credentials(stored)
    out.result({"url": wb.base_url}, f"Logged out of {wb.base_url}")
    return EXIT_OK


def cmd_workspaces(wb: Workbench, args: argparse.Namespace, out: Output) -> int:
    rows = list(wb.workspaces())
    out.result(rows, lambda: "\n".join(f"{w['id']:>5}  {w['name']}  ({w['role']})" for w in rows))
    return EXIT_OK


def cmd_tasks_list(wb: Workbench, args: argparse.Namespace, out: Output) -> int:
    rows = list(wb.tasks(_workspace(wb, args), include_archived=args.archived))

    def text() -> str:
        return "\n".join(
            f"{t['id']:>5}  {t['title']}"
            + (f"  [sandbox {t['sandbox']['state']}]" if t["sandbox"] else "")
            + ("  (archived)" if t["archived"] else "")
            for t in rows
        )

    out.result(rows, text)
    return EXIT_OK


def cmd_tasks_create(wb: Workbench, args: argparse.Namespace, out: Output) -> int:
    task = wb.create_task(
        _workspace(wb, args),
        args.title,
        repository=args.repository,
        branch=args.branch,
        agent=args.agent,
        prompt=args.prompt,
    )
    first_tab = task.get("first_tab")
    first = f"; first tab {first_tab['id']}" if first_tab else ""
    out.result(task, f"task {task['id']} created{first}")
    return EXIT_OK


def cmd_tab_list(wb: Workbench, args: argparse.Namespace, out: Output) -> int:
    rows = list(wb.tabs(args.task, include_closed=args.closed))
    out.result(rows, lambda: "\n".join(f"{t['id']}  {t['state']:<22}  {t['title']}" for t in rows))
    return EXIT_OK


def cmd_tab_open(wb: Workbench, args: argparse.Namespace, out: Output) -> int:
    tab = wb.open_tab(args.task, title=args.title, wait=None)
    if not args.wait:
        out.result(tab, f"tab {tab['id']} opened ({tab['state']})")
        return EXIT_OK
    out.progress(f"tab {tab['id']} opened on task {tab['task']}; waiting until it is ready")
    display = ProvisioningDisplay(out)
    ready = wb.wait_for_tab(tab, timeout=args.timeout, on_progress=display)
    elapsed = time.monotonic() - display.started
    out.result(ready, f"tab {ready['id']} ready in {elapsed:.1f}s")
    return EXIT_OK


def cmd_tab_show(wb: Workbench, args: argparse.Namespace, out: Output) -> int:
    tab = wb.tab(args.tab)
    out.result(tab, f"{tab['id']}  {tab['state']}  {tab['title']}")
    return EXIT_OK


def cmd_send(wb: Workbench, args: argparse.Namespace, out: Output) -> int:
    text = sys.stdin.read() if args.text == "-" else args.text
    if not args.wait:
        prompt = wb.send(args.tab, text, wait=False)
        out.result(prompt, f"prompt {prompt['id']} {prompt['state']}")
        return EXIT_OK
    streamed = not out.as_json

    def grow(added: str) -> None:
        out.out.write(added)
        out.out.flush()

    reply = wb.send(args.tab, text, timeout=args.timeout, on_text=grow if streamed else None)
    if streamed:
        out.out.write("\n")
    else:
        out.result(reply, "")
    if reply["state"] == "failed":
        out.err.write(f"workbench: the reply failed: {reply['error_message']}\n")
        return EXIT_ERROR
    return EXIT_OK


def cmd_messages(wb: Workbench, args: argparse.Namespace, out: Output) -> int:
    rows = list(wb.messages(args.tab))
    out.result(
        rows,
        lambda: "\n\n".join(f"[{m['role']} #{m['id']} {m['state']}]\n{m['text']}" for m in rows),
    )
    return EXIT_OK


def cmd_tail(wb: Workbench, args: argparse.Namespace, out: Output) -> int:
    """Print the workspace's events as they come (JSON lines with --json)."""
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    seen = 0
    with wb.stream(args.workspace, timeout=args.timeout) as socket:
        out.progress(f"following workspace {args.workspace} from seq {socket.model.seq}")
        with contextlib.suppress(WaitTimeout):
            for received in socket.frames(deadline):
                if received.kind != "event":
                    continue
                out.event(received.frame)
                seen += 1
                if args.count is not None and seen >= args.count:
                    return EXIT_OK
    return EXIT_OK if args.count is None else EXIT_TIMEOUT


def cmd_retry(wb: Workbench, args: argparse.Namespace, out: Output) -> int:
    tab = wb.retry_tab(args.tab)
    if args.wait:
        tab = wb.wait_for_tab(tab, timeout=args.timeout, on_progress=ProvisioningDisplay(out))
    out.result(tab, f"tab {tab['id']} {tab['state']}")
    return EXIT_OK


def cmd_close(wb: Workbench, args: argparse.Namespace, out: Output) -> int:
    wb.close_tab(args.tab)
    out.result({"id": args.tab, "state": "closed"}, f"tab {args.tab} closed")
    return EXIT_OK


def cmd_cancel(wb: Workbench, args: argparse.Namespace, out: Output) -> int:
    message = wb.cancel(args.tab)
    out.result(message, f"stopping the turn of tab {args.tab}")
    return EXIT_OK


def cmd_archive(wb: Workbench, args: argparse.Namespace, out: Output) -> int:
    task = wb.archive_task(args.task)
    out.result(task, f"task {task['id']} archived")
    return EXIT_OK


# -- the parser ----------------------------------------------------------------------------


def _common() -> argparse.ArgumentParser:
    """Options every command takes, before or after its name."""
    common = argparse.ArgumentParser(add_help=False)
    suppress = argparse.SUPPRESS
    common.add_argument("--url", default=suppress, help=f"the service (default {DEFAULT_URL})")
    common.add_argument("--token", default=suppress, help="an API token (else login's)")
    common.add_argument("--json", action="store_true", default=suppress, help="JSON output")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="The Workbench API from the command line: tasks, tabs, prompts, events.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Any, help_text: str, into: Any = commands) -> Any:
        sub = into.add_parser(name, parents=[common], help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    login = add("login", cmd_login, "log in and keep the token (0600, in your config dir)")
    login.add_argument("--username", "-u")
    login.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add("logout", cmd_logout, "forget the token kept for this service")
    add("workspaces", cmd_workspaces, "list your workspaces")

    tasks = commands.add_parser("tasks", help="list or create tasks").add_subparsers(
        dest="tasks_command", required=True, metavar="ACTION"
    )
    listing = add("list", cmd_tasks_list, "list a workspace's tasks", tasks)
    listing.add_argument("--workspace", "-w", type=int)
    listing.add_argument("--archived", action="store_true", help="include archived tasks")
    create = add("create", cmd_tasks_create, "create a task", tasks)
    create.add_argument("title")
    create.add_argument("--workspace", "-w", type=int)
    create.add_argument("--repository")
    create.add_argument("--branch")
    create.add_argument("--agent")
    create.add_argument("--prompt", help="also open its first tab and queue this prompt there")

    tab = commands.add_parser("tab", help="open, list or show tabs").add_subparsers(
        dest="tab_command", required=True, metavar="ACTION"
    )
    opening = add("open", cmd_tab_open, "open a tab on a task", tab)
    opening.add_argument("task", type=int)
    opening.add_argument("--title")
    opening.add_argument("--wait", action="store_true", help="show the provisioning until ready")
    opening.add_argument("--timeout", type=float, default=180.0, help="seconds (default 180)")
    tab_list = add("list", cmd_tab_list, "list a task's tabs", tab)
    tab_list.add_argument("task", type=int)
    tab_list.add_argument("--closed", action="store_true", help="include closed tabs")
    add("show", cmd_tab_show, "show a tab", tab).add_argument("tab")

    send = add("send", cmd_send, "send a prompt and stream the agent's reply")
    send.add_argument("tab")
    send.add_argument("text", help="the prompt (- reads it from stdin)")
    send.add_argument("--no-wait", dest="wait", action="store_false", help="only queue it")
    send.add_argument("--timeout", type=float, default=300.0, help="seconds (default 300)")
    add("messages", cmd_messages, "print a tab's transcript").add_argument("tab")

    tail = add("tail", cmd_tail, "print a workspace's events as they happen")
    tail.add_argument("workspace", type=int)
    tail.add_argument("--count", "-n", type=int, help="stop after this many events")
    tail.add_argument("--timeout", type=float, help="stop after this many seconds")

    retry = add("retry", cmd_retry, "retry a failed tab")
    retry.add_argument("tab")
    retry.add_argument("--wait", action="store_true", help="show the provisioning until ready")
    retry.add_argument("--timeout", type=float, default=180.0)
    add("close", cmd_close, "close a tab").add_argument("tab")
    add("cancel", cmd_cancel, "stop a tab's running agent turn").add_argument("tab")
    add("archive", cmd_archive, "archive a task").add_argument("task", type=int)
    return parser


def _exit_code(exc: WorkbenchError) -> int:
    if isinstance(exc, AuthenticationError):
        return EXIT_AUTH
    if isinstance(exc, NotFound):
        return EXIT_NOT_FOUND
    if isinstance(exc, WaitTimeout):
        return EXIT_TIMEOUT
    if isinstance(exc, ConnectionFailed):
        return EXIT_UNREACHABLE
    return EXIT_ERROR


def main(
    argv: Sequence[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    """Run one command; returns its exit code (see EXIT_CODES)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("url", "token"):
        setattr(args, name, getattr(args, name, None))
    out = Output(getattr(args, "json", False), stdout or sys.stdout, stderr or sys.stderr)
    url, token = resolve(args)
    wb = Workbench(url, token=token)
    try:
        if token is None and args.handler is not cmd_login:
            raise AuthenticationError(
                f"not logged in to {url}: run `workbench login` (or set WORKBENCH_TOKEN)",
                code="not_authenticated",
                status=401,
            )
        code: int = args.handler(wb, args, out)
        return code
    except UsageError as exc:
        out.err.write(f"workbench: {exc}\n")
        return EXIT_USAGE
    except WorkbenchError as exc:
        _report(out, exc)
        return _exit_code(exc)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `workbench ... | head`: the reader left; say nothing more
        if stdout is None:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    finally:
        wb.close()


def _report(out: Output, exc: WorkbenchError) -> None:
    if out.as_json:
        body = exc.as_dict()
        if isinstance(exc, TabFailed | TabClosed):
            body["tab"] = exc.tab
        elif isinstance(exc, PromptFailed):
            body["prompt"] = exc.prompt
        out.result(body, "")
    status = f" ({exc.status})" if isinstance(exc, WorkbenchAPIError) else ""
    out.err.write(f"workbench: {exc.code}{status}: {exc.message}\n")
    out.err.flush()
