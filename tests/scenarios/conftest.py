"""Fixtures for the scenario contract: a lab to run each kind of scenario in.

- code reviews run in a throwaway clone of this repository (HEAD, with the working tree's
  catalogue on top, committed), so branches come and go without touching the shared checkout;
- incidents run against the isolated embedded stack of ``tests/integration`` (free ports, own
  home), with the catalogue read from this checkout.

Break/verify/reset times of every contract run are printed at the end of the session.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from foundation.settings import REPO_ROOT, Settings
from lab.catalogue import CATALOGUE_DIR
from lab.engine import Lab
from tests.integration.conftest import stack  # noqa: F401  (the fixture incidents run on)

TIMINGS: dict[str, dict[str, float]] = {}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=Tests", "-c", "user.email=tests@fraudlab.example", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@dataclass(frozen=True)
class RepoSnapshot:
    """What a candidate would notice in the repository: refs, HEAD, status, worktrees."""

    refs: str
    head: str
    status: str
    worktrees: str


@dataclass
class LabEnv:
    lab: Lab
    settings: Settings
    repo: Path

    def snapshot(self) -> RepoSnapshot:
        return RepoSnapshot(
            refs=git(self.repo, "for-each-ref", "--format=%(refname) %(objectname)"),
            head=git(self.repo, "rev-parse", "--symbolic-full-name", "HEAD")
            + git(self.repo, "rev-parse", "HEAD"),
            status=git(self.repo, "status", "--porcelain", "--untracked-files=all"),
            worktrees=git(self.repo, "worktree", "list", "--porcelain"),
        )


def review_clone(root: Path) -> Path:
    """HEAD of this checkout plus the catalogue as it is in the working tree, committed."""
    repo = root / "repo"
    subprocess.run(["git", "clone", "--quiet", str(REPO_ROOT), str(repo)], check=True)
    shutil.rmtree(repo / CATALOGUE_DIR, ignore_errors=True)
    shutil.copytree(
        REPO_ROOT / CATALOGUE_DIR,
        repo / CATALOGUE_DIR,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    git(repo, "add", "-A", CATALOGUE_DIR)
    if git(repo, "status", "--porcelain"):
        git(repo, "commit", "--quiet", "-m", "catalogue under test")
    return repo


@pytest.fixture
def review_lab(tmp_path) -> LabEnv:
    repo = review_clone(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    settings = Settings(_env_file=None, home=home, lab_repo=repo)
    return LabEnv(Lab(settings, repo=repo), settings, repo)


@pytest.fixture
def incident_lab(request) -> LabEnv:
    running = request.getfixturevalue("stack")  # tests/integration's isolated embedded stack
    return LabEnv(Lab(running.settings, repo=REPO_ROOT), running.settings, REPO_ROOT)


def pytest_terminal_summary(terminalreporter) -> None:
    if not TIMINGS:
        return
    terminalreporter.section("scenario timings (seconds)")
    for name, times in sorted(TIMINGS.items()):
        cells = ", ".join(f"{verb} {seconds:.1f}" for verb, seconds in times.items())
        terminalreporter.write_line(f"{name}: {cells}")
