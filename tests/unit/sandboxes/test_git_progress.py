"""The clone's live log on a real git process: its progress meters reach the step's log as
they come, and nothing else git prints (paths, hosts, errors) does."""

from __future__ import annotations

import subprocess
from pathlib import Path

from sandboxes.providers import git
from sandboxes.providers.local import _git
from sandboxes.repositories import Repository


def _repository(path: Path) -> Path:
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    for n in range(40):
        (path / f"file{n}.txt").write_text(f"{n}\n" * 50)
    subprocess.run(["git", "-C", str(path), "add", "."], check=True)
    subprocess.run(
        ["git", "-C", str(path), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"],
        check=True,
    )
    return path


def clone(source: str, tmp_path: Path) -> tuple[int, str, list[str]]:
    base = tmp_path / "sandbox"
    home = base / "home"
    home.mkdir(parents=True)
    repository = Repository(kind="local", url=source, path=tmp_path / "origin")
    lines: list[str] = []
    returncode, output = _git(
        git.clone_args(repository, "main", str(base / "work"), progress=True),
        base=base,
        env=git.git_env(repository, home=str(home)),
        timeout=60,
        confined=False,
        read_only=[],
        log=lines.append,
    )
    return returncode, output, lines


def test_the_clones_progress_reaches_the_log_and_its_paths_do_not(tmp_path: Path):
    origin = _repository(tmp_path / "origin")
    returncode, output, lines = clone(f"file://{origin}", tmp_path)
    assert returncode == 0, output
    assert any(line.startswith("Receiving objects") for line in lines), lines
    assert all(git.PROGRESS.match(line) for line in lines)
    assert str(tmp_path) in output  # git said where it cloned to ("Cloning into ..."),
    assert not any(str(tmp_path) in line for line in lines)  # which members never see


def test_a_failed_clones_words_stay_out_of_the_log(tmp_path: Path):
    (tmp_path / "origin").mkdir()
    returncode, output, lines = clone(f"file://{tmp_path / 'missing'}", tmp_path)
    assert returncode != 0
    assert "missing" in output  # for the operators' log (git.clone_failed)
    assert lines == []


def test_the_clones_first_line_never_shows_the_urls_credentials():
    line = git.cloning_line("https://bob:ghp_secret@example.org/team/repo.git", "main")
    assert line == "Cloning https://example.org/team/repo.git at main"
