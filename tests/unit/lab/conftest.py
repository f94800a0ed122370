"""A toy catalogue in a throwaway git repository, to drive the engine without a stack.

The toy scenario breaks a one-line "service config" under the lab's home (the colour it
serves); its checks read that file back. It prints on purpose — from Python and straight to the
file descriptors — so that the tests see the engine keep it from the candidate.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from foundation.settings import Settings
from lab.engine import Lab

PASSPHRASE = "correct horse battery staple"
SLUG = "01-toy-dashboard-looks-odd"
TITLE = "The toy dashboard looks odd this morning"

MANIFEST = f"""\
id: "01"
title: {TITLE}
kind: incident
difficulty: easy
seniority: [junior]
time_box_minutes: 15
components: [toy config]
concepts: [reading a config file]
variants:
  colour:
    - value: crimson
      note: the config says crimson instead of green
    - value: navy
      note: the config says navy instead of green
    - value: amber
      note: the config says amber instead of green
steady_state: [git, toy_healthy]
tells: [crimson, navy, amber, wrong colour]
"""

BRIEF = """\
# Ticket {{ private.ticket }}

Customers say the toy dashboard looks odd since this morning. Please have a look.
"""

NOTES = """\
# Interviewer notes

## Root cause

The toy config serves {{ colour }}: {{ colour.note }}.

## Diagnosis path

Read the config.

## Hint ladder

1. Something changed this morning.
2. Look at the configuration
   of the toy service.
3. The colour is {{ colour }}.

## Reference fix

Write green back.

## Rubric

| dimension | junior | mid | senior |
|---|---|---|---|
| detection | sees it | sees it | sees it |

## Follow-up questions

- Why green?
"""

MODULE = """\
from __future__ import annotations

import os

from lab import Check, ScenarioContext


def _config(ctx: ScenarioContext):
    return ctx.settings.home / "toy.conf"


def toy_healthy(ctx: ScenarioContext) -> Check:
    path = _config(ctx)
    return Check("the toy looks as usual", not path.exists() or path.read_text() == "green")


def inject(ctx: ScenarioContext) -> None:
    print(f"injecting {ctx.variant['colour']}")  # must never reach the candidate
    os.write(1, b"fd1 noise from inject\\n")
    os.write(2, b"fd2 noise from inject\\n")
    if ctx.variant["colour"] == "amber" and ctx.settings.home.joinpath("fail-inject").exists():
        raise RuntimeError("inject exploded half way")
    _config(ctx).write_text(str(ctx.variant["colour"]))
    ctx.private["ticket"] = "OPS-1234"
    ctx.private["injections"] = ctx.private.get("injections", 0) + 1


def verify(ctx: ScenarioContext) -> list[Check]:
    text = _config(ctx).read_text() if _config(ctx).exists() else ""
    return [
        Check("the toy answers", True),
        Check("the toy looks as usual", text == "green", f"serves {text!r}"),
    ]


def reset(ctx: ScenarioContext) -> None:
    print("resetting")
    if ctx.settings.home.joinpath("fail-reset").exists():
        raise RuntimeError("reset exploded")
    _config(ctx).write_text("green")


def symptom(ctx: ScenarioContext) -> list[Check]:
    return [Check("the toy serves an odd colour", _config(ctx).read_text() != "green")]


def reference_fix(ctx: ScenarioContext) -> None:
    _config(ctx).write_text("green")


def wrong_fix(ctx: ScenarioContext) -> None:
    _config(ctx).write_text("lime")
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def make_toy_repo(root: Path) -> Path:
    repo = root / "repo"
    folder = repo / "broken_scenarios" / SLUG
    folder.mkdir(parents=True)
    (folder / "scenario.yaml").write_text(MANIFEST)
    (folder / "brief.md").write_text(BRIEF)
    (folder / "INTERVIEWER.md").write_text(NOTES)
    (folder / "scenario.py").write_text(MODULE)
    (repo / "broken_scenarios" / "AUTHORING.md").write_text("how to write one\n")
    (repo / "README.md").write_text("toy\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "toy catalogue")
    return repo


@dataclass
class ToyLab:
    repo: Path
    home: Path
    settings: Settings

    def lab(self, passphrase: str | None = None) -> Lab:
        source = (lambda: passphrase) if passphrase is not None else None
        return Lab(self.settings, repo=self.repo, passphrase=source)

    def git_status(self) -> str:
        return git(self.repo, "status", "--porcelain", "--untracked-files=all")


@pytest.fixture
def toy(tmp_path) -> ToyLab:
    repo = make_toy_repo(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    return ToyLab(repo, home, Settings(_env_file=None, home=home, lab_repo=repo))
