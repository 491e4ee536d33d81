"""The browser workbench's model (workbench/static/workbench/model.js), run by Node on the
event contract's cases: a snapshot plus the recorded events, applied by the JavaScript the
page runs, equals a fresh snapshot; so does replaying them onto that newer snapshot."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tests.unit.workbench.test_event_contract import CASES, load, run_case

pytestmark = pytest.mark.django_db

MODEL_JS = Path(settings.BASE_DIR) / "workbench" / "static" / "workbench" / "model.js"
# Applies each job's frames the way stream.js does (seq first, then model.apply) and prints
# what the page would hold.
RUNNER = """
import { readFileSync } from "node:fs";
import { WorkbenchModel } from "./model.mjs";

const jobs = JSON.parse(readFileSync(0, "utf8"));
const results = jobs.map(({ snapshot, frames, pages = [] }) => {
  const model = new WorkbenchModel();
  model.loadSnapshot(snapshot);
  for (const [path, page] of pages) model.loadPage(path, page);
  for (const frame of frames) {
    if (frame.seq <= model.seq) continue;
    if (frame.seq !== model.seq + 1) throw new Error(`gap before ${frame.seq}`);
    model.apply(frame);
  }
  return {
    seq: model.seq,
    me: model.me,
    workspace: model.workspace,
    members: Object.fromEntries(model.members),
    tasks: Object.fromEntries(model.tasks),
    tabs: Object.fromEntries(model.tabs),
    next: model.next,
  };
});
process.stdout.write(JSON.stringify(results));
"""


def run_model(tmp_path: Path, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    node = shutil.which("node")
    assert node, "node is missing (`make setup` installs it)"
    # A .mjs copy: Node then reads it as a module whatever its version and package.json say.
    shutil.copy(MODEL_JS, tmp_path / "model.mjs")
    (tmp_path / "runner.mjs").write_text(RUNNER)
    result = subprocess.run(
        [node, str(tmp_path / "runner.mjs")],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def as_held(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A snapshot as the model holds it: objects by id (JSON keys are strings)."""
    model = load(snapshot)
    return {
        **model,
        "members": {str(key): member for key, member in model["members"].items()},
        "tasks": {str(key): task for key, task in model["tasks"].items()},
        "tabs": {str(key): tab for key, tab in model["tabs"].items()},
    }


@pytest.mark.parametrize("name", list(CASES))
def test_the_pages_model_ends_where_a_fresh_snapshot_is(
    name, workspace, alice, dispatched, django_capture_on_commit_callbacks, tmp_path
):
    before, frames, after = run_case(name, workspace, alice, django_capture_on_commit_callbacks)

    applied, replayed = run_model(
        tmp_path,
        [
            {"snapshot": before, "frames": frames},
            # A snapshot may already hold the changes of the events after its seq.
            {"snapshot": {**after, "seq": before["seq"]}, "frames": frames},
        ],
    )

    assert applied == {**as_held(after), "next": None}
    assert replayed == {**as_held(after), "next": None}


def test_the_pages_model_holds_every_page_it_loads_and_ignores_a_stale_one(
    workspace, alice, settings, tmp_path
):
    from tests.unit.workbench.test_workbench_pages import paged_workspace

    settings.WORKBENCH_PAGE_TASKS, settings.WORKBENCH_PAGE_TABS = 2, 3
    snapshot, pages, task_ids, tab_ids = paged_workspace(workspace, alice)
    every, stale = run_model(
        tmp_path,
        [
            {"snapshot": snapshot, "frames": [], "pages": pages},
            {"snapshot": snapshot, "frames": [], "pages": pages[1:]},  # skips the next one
        ],
    )
    assert set(every["tasks"]) == {str(pk) for pk in task_ids}
    assert set(every["tabs"]) == tab_ids and every["next"] is None
    assert stale["tasks"].keys() == {str(t["id"]) for t in snapshot["tasks"]}
    assert stale["next"] == snapshot["next"]
