"""The scenario engine's verbs on a toy catalogue: what the candidate sees, what the
interviewer sees, and that sealing hides the catalogue without dirtying the repository."""

from __future__ import annotations

import os
import sys

import pytest

from lab import crypto
from lab.engine import LabError, captured
from tests.unit.lab.conftest import PASSPHRASE, SLUG, TITLE, git

# Everything that would tell a candidate which scenario this is, or its cause.
TELLS = (SLUG, TITLE, "toy-dashboard", "crimson", "navy", "amber", "colour", "noise", "inject")


def assert_hidden(text: str) -> None:
    lowered = text.lower()
    for tell in TELLS:
        assert tell.lower() not in lowered, f"{tell!r} shown to the candidate:\n{text}"


def test_list_shows_what_an_interviewer_picks_by_and_never_the_cause(toy) -> None:
    (m,) = toy.lab().scenarios()
    assert (m.id, m.title, m.time_box_minutes) == ("01", TITLE, 15)


def test_break_returns_only_the_rendered_ticket_and_leaves_git_clean(toy, capfd) -> None:
    lab = toy.lab()
    ticket = lab.break_("1", seed=0)
    out, err = capfd.readouterr()
    assert ticket.startswith("# Ticket OPS-1234\n")  # private data filled in after inject
    assert out == "" and err == ""  # inject's prints and fd writes were captured
    assert_hidden(ticket)
    assert toy.git_status() == ""
    assert (toy.home / "toy.conf").read_text() != "green"
    # what inject printed is kept for the interviewer, encrypted
    assert "fd1 noise from inject" in lab.reveal()
    assert b"noise" not in lab.store.state_file.read_bytes()


def test_the_lab_directory_names_nothing_and_holds_no_plain_text(toy) -> None:
    lab = toy.lab()
    lab.break_("01", seed=1)
    for path in lab.store.root.rglob("*"):
        assert_hidden(path.name)
        if path.is_file() and path.name != "lab.key":
            assert_hidden(path.read_bytes().decode(errors="replace"))


def test_break_twice_is_harmless_and_another_scenario_is_refused(toy) -> None:
    lab = toy.lab()
    first = lab.break_("01", seed=2)
    assert lab.break_("01") == first  # same scenario again: the same ticket
    _, _, ctx = lab.active_context()
    assert ctx.private["injections"] == 2  # inject ran again (idempotently), state kept
    with pytest.raises(LabError, match="another scenario is active"):
        lab.break_("01", seed=3)
    with pytest.raises(LabError, match="no scenario '07'"):
        toy.lab().break_("07")


def test_break_refuses_an_unhealthy_baseline_and_injects_nothing(toy) -> None:
    (toy.home / "toy.conf").write_text("purple")
    with pytest.raises(LabError, match="baseline is not healthy") as error:
        toy.lab().break_("01", seed=0)
    assert "the toy looks as usual" in str(error.value)
    assert not toy.lab().store.active()


def test_verify_fails_on_the_fault_passes_after_the_fix_and_names_nothing(toy, capfd) -> None:
    lab = toy.lab()
    lab.break_("01", seed=0)
    checks = lab.verify()
    assert [c.ok for c in checks] == [True, False]
    for check in checks:
        assert_hidden(check.description)
    _, module, ctx = lab.active_context()
    module.wrong_fix(ctx)
    assert not all(c.ok for c in lab.verify())
    module.reference_fix(ctx)
    assert all(c.ok for c in lab.verify())
    assert capfd.readouterr() == ("", "")


def test_a_crashing_verify_is_a_no_without_a_traceback(toy) -> None:
    lab = toy.lab()
    lab.break_("01", seed=0)
    (toy.home / "toy.conf").unlink()
    (toy.home / "toy.conf").mkdir()  # read_text on a directory raises
    (check,) = lab.verify()
    assert not check.ok and check.description == "the checks ran to the end"
    assert "IsADirectoryError" in check.detail


def test_hints_climb_the_ladder_once_each_and_survive_a_new_process(toy) -> None:
    toy.lab().break_("01", seed=0)
    variant = toy.lab().active_context()[2].variant["colour"]
    given = [toy.lab().hint() for _ in range(4)]
    assert [(h.number, h.total) for h in given] == [(1, 3), (2, 3), (3, 3), (3, 3)]
    assert given[0].text == "Something changed this morning."
    assert given[1].text == "Look at the configuration of the toy service."
    assert given[2].text == f"The colour is {variant}."
    assert given[3].text is None
    assert "hints given: 3" in toy.lab().reveal()


def test_reveal_shows_cause_variant_and_notes(toy) -> None:
    toy.lab().break_("01", seed=0)
    text = toy.lab().reveal()
    variant = toy.lab().active_context()[2].variant
    assert f"The toy config serves {variant['colour']}: {variant.note('colour')}." in text
    assert "seed 0" in text and "## Rubric" in text


def test_reset_restores_the_baseline_from_a_half_finished_fix_and_is_harmless_twice(toy) -> None:
    lab = toy.lab()
    lab.break_("01", seed=0)
    (toy.home / "toy.conf").write_text("gree")  # a fix in progress
    assert "healthy baseline verified (2 steady-state" in lab.reset()
    assert (toy.home / "toy.conf").read_text() == "green"
    assert not lab.store.active() and not (lab.store.root / "work").exists()
    assert lab.reset() == "no scenario is active: nothing to reset"
    with pytest.raises(LabError, match="no scenario is active"):
        lab.verify()


def test_a_failed_inject_or_reset_keeps_the_state_so_reset_can_finish_the_job(toy) -> None:
    lab = toy.lab()
    (toy.home / "fail-inject").touch()
    seed = next(s for s in range(10) if lab.fresh_context("01", s)[2].variant["colour"] == "amber")
    with pytest.raises(LabError, match="inject failed") as error:
        lab.break_("01", seed=seed)
    assert "inject exploded half way" in str(error.value)
    assert lab.store.active()
    (toy.home / "fail-reset").touch()
    with pytest.raises(LabError, match="reset failed"):
        lab.reset()
    assert lab.store.active()
    (toy.home / "fail-reset").unlink()
    assert lab.reset().startswith("reset: healthy baseline verified")


def test_status_says_at_most_that_a_scenario_is_active(toy) -> None:
    lab = toy.lab()
    assert lab.status_line() is None
    lab.break_("01", seed=0)
    assert lab.status_line() == "scenario lab: a scenario is active"


def test_seal_encrypts_the_catalogue_in_place_and_git_status_stays_clean(toy) -> None:
    lab = toy.lab()
    lab.break_("01", seed=0)
    folder = toy.repo / "broken_scenarios" / SLUG
    plain = {p.name: p.read_bytes() for p in folder.iterdir()}
    lab.seal(PASSPHRASE)
    for path in folder.iterdir():
        data = path.read_bytes()
        assert crypto.is_sealed(data), path.name
        assert_hidden(data.decode())
    assert (toy.repo / "broken_scenarios" / "AUTHORING.md").read_text() == "how to write one\n"
    assert toy.git_status() == ""
    assert git(toy.repo, "diff", "--stat") == ""
    assert not lab.store.key_file.exists()
    assert lab.status_line() == "scenario lab: a scenario is active (sealed)"

    # the candidate can still verify, without the passphrase
    assert [c.ok for c in toy.lab().verify()] == [True, False]
    # interviewer verbs need the passphrase, and the right one
    for verb in ("hint", "reveal", "reset", "scenarios", "require_interviewer"):
        with pytest.raises(LabError, match="needs the passphrase"):
            getattr(toy.lab(), verb)()
        with pytest.raises(LabError, match="wrong passphrase"):
            getattr(toy.lab("not the passphrase"), verb)()
    assert toy.lab(PASSPHRASE).hint().number == 1
    assert "The toy config serves" in toy.lab(PASSPHRASE).reveal()
    with pytest.raises(LabError, match="already sealed"):
        toy.lab(PASSPHRASE).seal(PASSPHRASE)

    message = toy.lab().unseal(PASSPHRASE)
    assert message.startswith("unsealed 4 catalogue file(s)")
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == plain
    assert toy.git_status() == ""
    assert git(toy.repo, "ls-files", "-v", "broken_scenarios").split()[::2] == ["H"] * 5
    assert toy.lab().hint().number == 2  # the state survived seal and unseal


def test_a_sealed_lab_can_break_and_reset_with_the_passphrase(toy) -> None:
    toy.lab().seal(PASSPHRASE)
    with pytest.raises(LabError, match="needs the passphrase"):
        toy.lab().break_("01", seed=0)
    ticket = toy.lab(PASSPHRASE).break_("01", seed=0)
    assert ticket.startswith("# Ticket OPS-1234")
    assert [c.ok for c in toy.lab().verify()] == [True, False]  # from the capsule
    assert toy.lab(PASSPHRASE).reset().startswith("reset: healthy baseline verified")
    assert not toy.lab().store.capsule_file.exists()
    toy.lab().unseal(PASSPHRASE)
    assert toy.git_status() == ""


def test_short_passphrases_are_refused(toy) -> None:
    with pytest.raises(LabError, match="8\\+ characters"):
        toy.lab().seal("short")
    assert not toy.lab().store.sealed()


def test_captured_swallows_python_and_file_descriptor_output(capfd) -> None:
    with captured() as log:
        print("from python")
        print("to stderr", file=sys.stderr)
        os.write(1, b"from fd 1\n")
        os.write(2, b"from fd 2\n")
    assert capfd.readouterr() == ("", "")
    for line in ("from python", "to stderr", "from fd 1", "from fd 2"):
        assert line in log.getvalue()
