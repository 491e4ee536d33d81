"""The `workbench` command line over a MockTransport: credentials (0600, per service), exit
codes, --json output of results and errors, and the provisioning display."""

from __future__ import annotations

import io
import json
import stat
import sys
from functools import partial

import httpx
import pytest

from workbench_client import cli
from workbench_client.rest import Workbench


@pytest.fixture
def config_home(tmp_path, monkeypatch):
    """A private XDG config dir, and no WORKBENCH_* from the environment."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("WORKBENCH_URL", "WORKBENCH_TOKEN", "WORKBENCH_WORKSPACE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "config"


def serve(monkeypatch, handler) -> None:
    """Every Workbench the CLI makes talks to `handler`."""
    transport = httpx.MockTransport(handler)
    monkeypatch.setattr(cli, "Workbench", partial(Workbench, transport=transport))


def run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        code = cli.main(list(argv), stdout=out, stderr=err)
    finally:
        sys.stdin = saved
    return code, out.getvalue(), err.getvalue()


def api(routes: dict[tuple[str, str], httpx.Response]):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return routes.get((request.method, request.url.path)) or httpx.Response(
            404, json={"error": {"code": "not_found", "message": "Not found.", "fields": {}}}
        )

    return handler, seen


def test_login_keeps_the_token_readable_by_its_owner_only(config_home, monkeypatch):
    handler, seen = api({("POST", "/api/auth/token/"): httpx.Response(200, json={"token": "abc"})})
    serve(monkeypatch, handler)
    code, out, _ = run(
        "--url", "http://wb.test/", "login", "-u", "demo", "--password-stdin", stdin="pw\n"
    )
    assert code == 0, out
    path = config_home / "workbench" / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    stored = json.loads(path.read_text())
    assert stored == {
        "services": {"http://wb.test": {"token": "abc", "username": "demo"}},
        "default": "http://wb.test",
    }
    assert json.loads(seen[0].content) == {"username": "demo", "password": "pw"}


def test_the_stored_token_goes_to_its_own_service_only(config_home, monkeypatch):
    cli.save_credentials(
        {"default": "http://wb.test", "services": {"http://wb.test": {"token": "abc"}}}
    )
    routes = {("GET", "/api/workspaces/"): httpx.Response(200, json=[])}
    handler, seen = api(routes)
    serve(monkeypatch, handler)
    assert run("workspaces")[0] == 0
    assert seen[-1].headers["Authorization"] == "Token abc"
    code, _, err = run("--url", "http://elsewhere.test", "workspaces")
    assert code == cli.EXIT_AUTH and "not logged in" in err
    assert len(seen) == 1  # nothing was sent to the other service


def test_a_wrong_password_is_the_auth_exit_code(config_home, monkeypatch):
    refused = {"error": {"code": "invalid", "message": "Unable to log in.", "fields": {}}}
    handler, _ = api({("POST", "/api/auth/token/"): httpx.Response(400, json=refused)})
    serve(monkeypatch, handler)
    code, _, err = run("login", "-u", "demo", "--password-stdin", stdin="bad\n")
    assert code == cli.EXIT_AUTH and "Unable to log in" in err
    assert not (config_home / "workbench" / "credentials.json").exists()


@pytest.mark.parametrize(
    ("status", "code", "exit_code"),
    [(401, "authentication_failed", 3), (404, "tab_not_found", 4), (409, "tab_closed", 1)],
)
def test_api_errors_map_to_exit_codes_and_json_envelopes(
    config_home, monkeypatch, status, code, exit_code
):
    body = {"error": {"code": code, "message": "refused", "fields": {}}}
    handler, _ = api({("POST", "/api/tabs/t1/messages/"): httpx.Response(status, json=body)})
    serve(monkeypatch, handler)
    result, out, err = run("--token", "x", "--json", "send", "t1", "hi", "--no-wait")
    assert result == exit_code
    assert json.loads(out) == {
        "error": {"code": code, "message": "refused", "fields": {}, "status": status}
    }
    assert code in err


def test_json_may_come_after_the_command_too(config_home, monkeypatch):
    tasks = [{"id": 1, "title": "a", "sandbox": None, "archived": False}]
    handler, _ = api({("GET", "/api/workspaces/2/tasks/"): httpx.Response(200, json=tasks)})
    serve(monkeypatch, handler)
    code, out, _ = run("--token", "x", "tasks", "list", "-w", "2", "--json")
    assert code == 0 and json.loads(out) == tasks


def test_several_workspaces_and_none_chosen_is_a_usage_error(config_home, monkeypatch):
    mine = [{"id": 1, "name": "A", "role": "owner"}, {"id": 2, "name": "B", "role": "member"}]
    handler, _ = api({("GET", "/api/workspaces/"): httpx.Response(200, json=mine)})
    serve(monkeypatch, handler)
    code, _, err = run("--token", "x", "tasks", "list")
    assert code == cli.EXIT_USAGE and "1 (A), 2 (B)" in err


def test_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for code in cli.EXIT_CODES:
        assert f"  {code}  " in text


def test_the_provisioning_display_shows_the_plan_steps_logs_and_states():
    err = io.StringIO()
    display = cli.ProvisioningDisplay(cli.Output(False, io.StringIO(), err))
    sandbox = {
        "id": 4,
        "plan": [
            {"name": "clone", "estimate_ms": 1500},
            {"name": "start_server", "estimate_ms": None},
        ],
        "steps": [],
    }
    step = {
        "id": 9,
        "name": "clone",
        "outcome": "running",
        "log": "",
        "detail": "",
        "duration_ms": None,
    }
    display("sandbox.updated", sandbox)
    pending = {"id": "t1", "state": "pending_provision", "error_code": "", "version": 2}
    display("tab.updated", pending)
    display("provisioning.step", step)
    display("provisioning.step", {**step, "log": "Receiving objects: 50%"})
    display("provisioning.step", {**step, "log": "Receiving objects: 50%\nReceiving objects: 100%"})
    display(
        "provisioning.step",
        {**step, "outcome": "succeeded", "duration_ms": 1234, "log": "Receiving objects: 100%"},
    )
    # Replays of what was already shown (steps have no version; tabs do): nothing printed.
    display("sandbox.updated", {**sandbox, "steps": [{**step, "outcome": "succeeded"}]})
    display("provisioning.step", {**step, "log": "Receiving objects: 1%"})
    display("tab.updated", {**pending, "state": "pending_session_create", "version": 1})
    lines = err.getvalue().splitlines()
    assert lines[0] == "plan: clone (~1.5s), start_server (~?)"
    assert lines[1].startswith("tab t1: pending_provision")
    assert lines[2:] == [
        "  ... clone (~1.5s)",
        "      | Receiving objects: 50%",
        "      | Receiving objects: 100%",
        "   ok clone 1.2s",
    ]


def test_the_terminal_never_gets_the_services_control_characters():
    """A reply or title is somebody's text: an escape sequence in it (clear the screen, set
    the title, OSC 52 writing the clipboard) reaches neither stdout nor stderr raw."""
    out, err = io.StringIO(), io.StringIO()
    output = cli.Output(False, out, err)
    hostile = "ok\x1b]52;c;ZXZpbA==\x07 \x1b[2J\x9b31m done\tand\nnext"
    output.result({}, hostile)
    output.progress(hostile)
    for text in (out.getvalue(), err.getvalue()):
        assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
        assert "ok]52;c;ZXZpbA== [2J31m done\tand\nnext" in text
    as_json = io.StringIO()
    cli.Output(True, as_json, io.StringIO()).result({"text": hostile}, "")
    assert json.loads(as_json.getvalue())["text"] == hostile  # escaped, and intact
