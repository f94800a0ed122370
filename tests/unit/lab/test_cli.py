"""The verbs as a person runs them: `fraudlab lab …` and `make …` in a fresh process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from foundation.settings import REPO_ROOT
from tests.unit.lab.conftest import PASSPHRASE, SLUG, TITLE
from tests.unit.lab.test_engine import assert_hidden


def environment(toy, passphrase: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDLAB_")}
    env["FRAUDLAB_HOME"] = str(toy.home)
    env["FRAUDLAB_LAB_REPO"] = str(toy.repo)
    # a port nothing listens on: `status` must not describe the shared stack
    env["FRAUDLAB_SERVING_PORT"] = env["FRAUDLAB_MLFLOW_PORT"] = "9"
    if passphrase is not None:
        env["FRAUDLAB_LAB_PASSPHRASE"] = passphrase
    return env


def cli(toy, *args: str, passphrase: str | None = None, stdin: str = ""):
    return subprocess.run(
        [sys.executable, "-m", "fraudlab.cli", *args],
        env=environment(toy, passphrase),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_break_prints_the_ticket_and_verify_answers_ok_no_with_its_exit_code(toy) -> None:
    broke = cli(toy, "lab", "break", "01", "--seed", "0")
    assert broke.returncode == 0, broke.stderr
    assert broke.stdout.startswith("# Ticket OPS-1234\n") and broke.stderr == ""
    verify = cli(toy, "lab", "verify")
    assert verify.returncode == 1
    assert verify.stdout.splitlines() == [
        "OK  the toy answers",
        "NO  the toy looks as usual",
        "1 of 2 checks pass",
    ]
    (toy.home / "toy.conf").write_text("green")
    assert cli(toy, "lab", "verify").returncode == 0
    status = cli(toy, "status")
    assert "scenario lab: a scenario is active" in status.stdout
    for result in (broke, verify, status):
        assert_hidden(result.stdout + result.stderr)


def test_interviewer_verbs_need_the_passphrase_once_sealed(toy) -> None:
    assert cli(toy, "lab", "break", "01", "--seed", "0").returncode == 0
    sealed = cli(toy, "lab", "seal", passphrase=PASSPHRASE)
    assert sealed.returncode == 0, sealed.stderr
    wrong = cli(toy, "lab", "hint", stdin="not it\n")
    assert wrong.returncode == 3 and "wrong passphrase" in wrong.stderr
    assert "lab passphrase" in wrong.stderr  # the prompt goes to stderr, never stdout
    hint = cli(toy, "lab", "hint", stdin=f"{PASSPHRASE}\n")
    assert hint.returncode == 0 and hint.stdout == "hint 1 of 3: Something changed this morning.\n"
    assert cli(toy, "lab", "verify").returncode == 1  # no passphrase needed
    explain = cli(toy, "lab", "verify", "--explain")
    assert explain.returncode != 0 and "passphrase" in explain.stderr
    listing = cli(toy, "lab", "list", passphrase=PASSPHRASE)
    assert TITLE in listing.stdout
    assert cli(toy, "lab", "unseal", passphrase=PASSPHRASE).returncode == 0
    assert "serves" in cli(toy, "lab", "verify", "--explain").stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_break_prints_nothing_but_the_ticket(toy) -> None:
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO_ROOT), "break", "S=01", "SEED=0"],
        env=environment(toy),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("# Ticket OPS-1234\n") and result.stderr == ""
    assert SLUG not in result.stdout and "S=01" not in result.stdout
