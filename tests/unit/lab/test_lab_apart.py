"""The lab as the containerised runner uses it: catalogue, state and repository apart.

The catalogue is read from a read-only directory outside the repository (the interviewer's
checkout, mounted), the state lives in a directory of its own (the lab volume), and the
repository is the candidate's checkout, which holds no catalogue at all.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from foundation.settings import Settings
from lab import crypto
from lab.engine import Lab, LabError
from tests.unit.lab.conftest import PASSPHRASE, SLUG, git, make_toy_repo


def _read_only(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _writable(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


@pytest.fixture
def apart(tmp_path):
    interviewer = make_toy_repo(tmp_path / "interviewer")
    catalogue = interviewer / "broken_scenarios"
    candidate = tmp_path / "candidate"
    candidate.mkdir()
    (candidate / "README.md").write_text("the project\n")
    git(candidate, "init", "-q", "-b", "main")
    git(candidate, "add", "-A")
    git(candidate, "commit", "-q", "-m", "the project")
    home, lab_dir = tmp_path / "home", tmp_path / "lab-volume"
    home.mkdir()
    settings = Settings(
        _env_file=None, home=home, lab_repo=candidate, lab_dir=lab_dir, lab_catalogue=catalogue
    )
    _read_only(catalogue)
    yield settings, catalogue, candidate
    _writable(catalogue)


def lab(settings: Settings, passphrase: str | None = None) -> Lab:
    return Lab(settings, passphrase=(lambda: passphrase) if passphrase else None)


def test_the_lab_reads_a_catalogue_apart_and_keeps_its_state_in_its_own_directory(apart) -> None:
    settings, _, candidate = apart
    assert [m.id for m in lab(settings).scenarios()] == ["01"]
    ticket = lab(settings).break_("01", seed=0)
    assert ticket.startswith("# Ticket OPS-1234")
    assert (settings.lab_dir / "state.enc").exists()
    assert not (settings.home / "lab").exists()  # nothing in the volume services share
    assert git(candidate, "status", "--porcelain", "--untracked-files=all") == ""
    assert [c.ok for c in lab(settings).verify()] == [True, False]
    assert lab(settings).reset().startswith("reset: healthy baseline verified")


def test_sealing_a_lab_apart_locks_the_state_and_leaves_the_catalogue_alone(apart) -> None:
    settings, catalogue, _ = apart
    before = {p: p.read_bytes() for p in catalogue.rglob("*") if p.is_file()}
    lab(settings).break_("01", seed=0)
    assert "catalogue is read from outside" in lab(settings).seal(PASSPHRASE)
    assert {p: p.read_bytes() for p in catalogue.rglob("*") if p.is_file()} == before
    assert not any(crypto.is_sealed(data) for data in before.values())
    assert [c.ok for c in lab(settings).verify()] == [True, False]  # no passphrase needed
    with pytest.raises(LabError, match="needs the passphrase"):
        lab(settings).hint()
    assert lab(settings, PASSPHRASE).hint().number == 1
    assert lab(settings).unseal(PASSPHRASE).startswith("unsealed 0 catalogue file(s)")
    assert lab(settings).hint().number == 2
    assert (catalogue / SLUG / "scenario.py").read_bytes() == before[
        catalogue / SLUG / "scenario.py"
    ]
