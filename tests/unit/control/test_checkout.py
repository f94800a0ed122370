"""The candidate's checkout: made once from the code, never touched again."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from control import checkout
from foundation.settings import Settings


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture
def source(tmp_path) -> Path:
    root = tmp_path / "image-code"
    (root / "pipelines" / "__pycache__").mkdir(parents=True)
    (root / "pipelines" / "training.py").write_text("def train(): ...\n")
    (root / "pipelines" / "__pycache__" / "training.cpython-311.pyc").write_bytes(b"\0")
    (root / "README.md").write_text("fraudlab\n")
    return root


def test_the_checkout_is_the_code_as_one_commit_and_the_candidate_can_commit(
    tmp_path, source
) -> None:
    repo = tmp_path / "checkout"
    settings = Settings(_env_file=None, home=tmp_path / "home", lab_repo=repo, git_commit="abc123")
    assert checkout.ensure(settings, source)
    assert git(repo, "log", "--format=%s %an").strip() == "fraudlab at abc123 fraudlab"
    assert git(repo, "ls-files").split() == ["README.md", "pipelines/training.py"]
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    (repo / "README.md").write_text("changed\n")
    git(repo, "commit", "-q", "-am", "my change")  # an identity is configured
    assert git(repo, "log", "-1", "--format=%an").strip() == "Candidate"


def test_a_checkout_with_commits_is_never_touched_again(tmp_path, source) -> None:
    repo = tmp_path / "checkout"
    settings = Settings(_env_file=None, home=tmp_path / "home", lab_repo=repo)
    checkout.ensure(settings, source)
    git(repo, "checkout", "-q", "-b", "review")
    (repo / "README.md").write_text("work in progress\n")
    (source / "NEW.md").write_text("newer image\n")
    assert not checkout.ensure(settings, source)
    assert (repo / "README.md").read_text() == "work in progress\n"
    assert not (repo / "NEW.md").exists()
    assert git(repo, "branch", "--show-current").strip() == "review"
