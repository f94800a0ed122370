"""The interview record on the toy catalogue: the timeline from break to reset, kept after reset,
encrypted to the passphrase while sealed, and the commands a person runs meanwhile."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lab import crypto
from lab.engine import LabError
from lab.record import EventKind, Records, command_words, note_command
from tests.unit.lab.conftest import PASSPHRASE, TITLE
from tests.unit.lab.test_cli import environment
from tests.unit.lab.test_engine import assert_hidden


def kinds(session) -> list[str]:
    return [event.kind.value for event in session.events]


def test_a_session_records_ticket_hints_verifies_reveal_and_reset_in_order(toy) -> None:
    lab = toy.lab()
    ticket = lab.break_("01", seed=0)
    assert "This session is recorded" in ticket and "never their arguments" in ticket
    lab.verify()
    toy.lab().hint()
    toy.lab().hint()
    (toy.home / "toy.conf").write_text("green")
    toy.lab().verify()
    toy.lab().reveal()
    live = toy.lab().session()  # the active session, before reset
    assert not live.finished and kinds(live)[-1] == "reveal"
    toy.lab().reset()

    session = toy.lab().session()  # after reset: the last finished session
    assert session.finished and (session.scenario_id, session.title) == ("01", TITLE)
    assert kinds(session) == [
        "break",
        "ticket",
        "verify",
        "hint",
        "hint",
        "verify",
        "reveal",
        "reset",
    ]
    hints = [e for e in session.events if e.kind == EventKind.HINT]
    assert [(e.rung, e.total) for e in hints] == [(1, 3), (2, 3)]
    first, second = (e for e in session.events if e.kind == EventKind.VERIFY)
    assert [(c.description, c.ok) for c in first.checks] == [
        ("the toy answers", True),
        ("the toy looks as usual", False),
    ]
    assert all(c.ok for c in second.checks)
    times = [e.at for e in session.events]
    assert times == sorted(times) and session.ended_at >= times[-1]
    assert "| detection |" in session.rubric and session.follow_ups == ["Why green?"]
    assert session.hints_total == 3
    assert not Records(lab.store.root).journal.exists()  # the journal went into the archive


def test_each_session_is_kept_and_a_new_break_starts_an_empty_timeline(toy) -> None:
    for seed in (0, 1):
        toy.lab().break_("01", seed=seed)
        toy.lab().verify()
        toy.lab().reset()
    first, second = toy.lab().sessions()
    assert (first.seed, second.seed) == (0, 1)
    assert kinds(second) == ["break", "ticket", "verify", "reset"]
    assert toy.lab().session(first.id).id == first.id
    with pytest.raises(LabError, match="no session 'nope'"):
        toy.lab().session("nope")


def test_the_record_is_ciphertext_and_needs_the_passphrase_while_sealed(toy) -> None:
    toy.lab().break_("01", seed=0)
    toy.lab().hint()
    toy.lab().seal(PASSPHRASE)
    toy.lab().verify()  # the candidate, without the passphrase: still recorded
    records = Records(toy.lab().store.root)
    for path in (records.journal, records.public_file, records.private_file):
        text = path.read_bytes().decode(errors="replace")
        assert_hidden(text)
        assert "hint" not in text and "verify" not in text, path.name
    for verb in ("session", "sessions"):
        with pytest.raises(LabError, match="needs the passphrase"):
            getattr(toy.lab(), verb)()
        with pytest.raises(LabError, match="wrong passphrase"):
            getattr(toy.lab("not the passphrase"), verb)()
    assert kinds(toy.lab(PASSPHRASE).session()) == ["break", "ticket", "hint", "verify"]
    toy.lab(PASSPHRASE).reset()
    assert kinds(toy.lab(PASSPHRASE).session())[-1] == "reset"
    toy.lab().unseal(PASSPHRASE)
    assert kinds(toy.lab().session())[-1] == "reset"  # readable with the key file again


def test_commands_are_recorded_by_name_only_at_a_terminal_while_a_scenario_is_active(
    toy,
) -> None:
    root = toy.lab().store.root
    assert not note_command(root, ["monitor"], interactive=True)  # nothing active
    toy.lab().break_("01", seed=0)
    assert note_command(root, ["monitor"], interactive=True)
    assert not note_command(root, ["monitor"], interactive=False)  # the stack's own processes
    assert not note_command(root, ["lab", "verify"], interactive=True)  # records itself
    events = [e for e in toy.lab().session().events if e.kind == EventKind.COMMAND]
    assert [e.command for e in events] == ["fraudlab monitor"]


def test_command_words_keep_the_command_path_and_drop_every_argument() -> None:
    import typer

    from fraudlab.cli import app

    group = typer.main.get_command(app)
    assert command_words(group, ["config", "set", "psi_alert=0.4"]) == ["config", "set"]
    assert command_words(group, ["monitor", "drift"]) == ["monitor"]
    assert command_words(group, ["--help"]) == []
    assert command_words(group, ["lab", "learn", "start", "05"]) == ["lab", "learn", "start"]


def test_the_fraudlab_command_records_itself_when_typed_at_a_terminal(toy) -> None:
    toy.lab().break_("01", seed=0)
    command = [sys.executable, "-m", "fraudlab.cli", "config", "set", "psi_alert=0.4"]
    # at a terminal (a pseudo-terminal stands in for the candidate's)
    primary, secondary = os.openpty()
    try:
        typed = subprocess.run(
            command,
            env=environment(toy),
            stdin=secondary,
            capture_output=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(primary)
        os.close(secondary)
    assert typed.returncode == 0, typed.stderr
    # from a script or the stack's own processes: no terminal, not recorded
    scripted = subprocess.run(
        command,
        env=environment(toy),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert scripted.returncode == 0, scripted.stderr
    session = toy.lab().session()
    commands = [e.command for e in session.events if e.kind == EventKind.COMMAND]
    assert commands == ["fraudlab config set"]
    assert "psi_alert" not in session.model_dump_json()


def test_sealed_boxes_open_only_with_their_private_key() -> None:
    private, public = crypto.new_box_keys()
    box = crypto.seal_box(public, b"hint 2 at 10:42")
    assert b"hint" not in box and crypto.open_box(private, box) == b"hint 2 at 10:42"
    assert crypto.seal_box(public, b"x") != crypto.seal_box(public, b"x")  # fresh each time
    with pytest.raises(crypto.WrongPassphrase):
        crypto.open_box(crypto.new_box_keys()[0], box)
