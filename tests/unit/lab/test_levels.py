"""Verify by level: checks tagged detected / localised / fixed / prevented are summarised as the
level reached, by the engine's record and by `make verify`'s last line."""

from __future__ import annotations

import ast

import pytest

from foundation.settings import REPO_ROOT
from lab import Check, Level
from lab.catalogue import MODULE, Catalogue, catalogue_root
from lab.context import summarise_levels
from lab.record import EventKind
from tests.unit.lab.conftest import SLUG, git
from tests.unit.lab.test_cli import cli

LEVELLED_VERIFY = """
def verify(ctx: ScenarioContext) -> list[Check]:
    text = _config(ctx).read_text() if _config(ctx).exists() else ""
    guard = ctx.settings.home / "toy.guard"
    return [
        Check("the toy answers", True, level="detected"),
        Check("the toy looks as usual", text == "green", f"serves {text!r}"),
        Check("the toy config is guarded", guard.exists(), level=Level.PREVENTED),
    ]
"""


def test_a_check_takes_a_level_by_name_and_refuses_an_unknown_one() -> None:
    assert Check("x", True, level="fixed").level is Level.FIXED
    assert Check("x", True).level is None
    with pytest.raises(ValueError, match="use one of detected, localised, fixed, prevented"):
        Check("x", True, level="mitigated")


@pytest.mark.parametrize(
    "oks, reached, describe",
    [
        ((False, False, False), None, "reached: none yet; detected: 0 of 1 checks pass"),
        ((True, False, True), Level.DETECTED, "reached: detected; fixed: 0 of 1 checks pass"),
        ((True, True, False), Level.FIXED, "reached: fixed; prevented: 0 of 1 checks pass"),
        ((True, True, True), Level.PREVENTED, "reached: prevented"),
    ],
)
def test_the_level_reached_is_the_highest_whose_checks_and_all_below_pass(
    oks, reached, describe
) -> None:
    checks = [
        Check("seen", oks[0], level=Level.DETECTED),
        Check("repaired", oks[1]),  # untagged in a levelled verify: fixed
        Check("kept away", oks[2], level=Level.PREVENTED),
    ]
    summary = summarise_levels(checks)
    assert summary.reached == reached and summary.describe() == describe
    assert [c.level for c in summary.counts] == [Level.DETECTED, Level.FIXED, Level.PREVENTED]


def test_a_verify_without_levels_has_no_summary() -> None:
    assert summarise_levels([Check("a", True), Check("b", False)]) is None


def test_verify_prints_the_level_reached_and_the_record_keeps_it(toy) -> None:
    module = toy.repo / "broken_scenarios" / SLUG / MODULE
    source = module.read_text()
    start = source.index("def verify(")
    end = source.index("def reset(")
    module.write_text(
        source[:start].replace(
            "from lab import Check, ScenarioContext",
            "from lab import Check, Level, ScenarioContext",
        )
        + LEVELLED_VERIFY.lstrip()
        + "\n\n"
        + source[end:]
    )
    git(toy.repo, "commit", "-qam", "levels")
    assert cli(toy, "lab", "break", "01", "--seed", "0").returncode == 0
    broken = cli(toy, "lab", "verify")
    assert broken.stdout.splitlines()[-1] == "reached: detected; fixed: 0 of 1 checks pass"
    (toy.home / "toy.conf").write_text("green")
    fixed = cli(toy, "lab", "verify")
    assert fixed.returncode == 1
    assert fixed.stdout.splitlines()[-2:] == [
        "2 of 3 checks pass",
        "reached: fixed; prevented: 0 of 1 checks pass",
    ]
    (toy.home / "toy.guard").touch()
    assert cli(toy, "lab", "verify").stdout.splitlines()[-1] == "reached: prevented"
    verifies = [e for e in toy.lab().session().events if e.kind == EventKind.VERIFY]
    assert [e.reached for e in verifies] == ["detected", "fixed", "prevented"]
    assert [c.level for c in verifies[0].checks] == ["detected", None, "prevented"]


def test_at_least_three_scenarios_grade_their_checks_by_level() -> None:
    """Parsed, not run: verify needs a stack. A level is a keyword of a Check in verify."""
    levelled = []
    for scenario in Catalogue(catalogue_root(REPO_ROOT)).scenarios():
        tree = ast.parse(scenario.text(MODULE))
        verify = next(
            node
            for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name == "verify"
        )
        helpers = {
            node.name: node
            for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name != "verify"
        }
        called = {
            call.func.id
            for call in ast.walk(verify)
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
        }
        bodies = [verify, *(helpers[name] for name in called if name in helpers)]
        levels = {
            keyword.value.attr
            for body in bodies
            for call in ast.walk(body)
            if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "Check"
            for keyword in call.keywords
            if keyword.arg == "level" and isinstance(keyword.value, ast.Attribute)
        }
        if levels:
            assert levels <= {level.name for level in Level}, scenario.folder.name
            assert len(levels) >= 2, f"{scenario.folder.name}: one level grades nothing"
            levelled.append(scenario.id)
    assert len(levelled) >= 3, levelled
