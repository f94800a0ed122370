"""The candidate's git checkout in the containerised stack.

Owns: making the repository the candidate works in (``Settings.lab_repo``: the
``candidate-repo`` volume, mounted in the workstation and in the lab runner): once, when it is
empty, a copy of the code this process runs from (the image's: no scenario catalogue, notes or
state ever enter an image) committed as the first commit of ``main``. Code-review scenarios make
their branches there; the candidate reviews, fixes and commits there.

Must not: touch a repository that already has commits (the candidate's work, the lab's
branches), or copy anything but the project's files (no caches).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from foundation.settings import REPO_ROOT, Settings

IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache")
# Who the candidate commits as (git refuses to commit without a name in a container whose
# hostname has no domain); the first commit is the project's.
CANDIDATE = ("Candidate", "candidate@fraudlab.example")
PROJECT = ("fraudlab", "fraudlab@fraudlab.example")


def _git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(
        ["git", "-c", "core.hooksPath=/dev/null", *args],
        cwd=repo,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def ensure(settings: Settings, source: Path = REPO_ROOT) -> bool:
    """Create the checkout from ``source`` unless it has a commit; True when it was created."""
    repo = Path(settings.lab_repo or "")
    if not settings.lab_repo:
        raise ValueError("FRAUDLAB_LAB_REPO is not set: no checkout to make")
    if (repo / ".git").exists():
        head = subprocess.run(
            ["git", "rev-parse", "--verify", "-q", "HEAD"],
            cwd=repo,
            capture_output=True,
            check=False,
        )
        if head.returncode == 0:
            return False
    repo.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        target = repo / entry.name
        if entry.name == ".git" or target.exists():
            continue
        if entry.is_dir():
            shutil.copytree(entry, target, ignore=IGNORED)
        else:
            shutil.copy2(entry, target)
    _git(repo, "init", "--quiet", "--initial-branch=main")
    _git(repo, "config", "user.name", CANDIDATE[0])
    _git(repo, "config", "user.email", CANDIDATE[1])
    _git(repo, "add", "--all")
    commit = settings.git_commit or "unknown"
    identity = {
        "GIT_AUTHOR_NAME": PROJECT[0],
        "GIT_AUTHOR_EMAIL": PROJECT[1],
        "GIT_COMMITTER_NAME": PROJECT[0],
        "GIT_COMMITTER_EMAIL": PROJECT[1],
    }
    _git(repo, "commit", "--quiet", "-m", f"fraudlab at {commit[:12]}", env=identity)
    return True
