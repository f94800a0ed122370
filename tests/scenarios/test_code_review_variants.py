"""Scenario 08 beyond the one seed the contract test drives: every variant of the reviewed change
applies to today's training module and differs from the others, and the hidden checks tell each
flaw from its fix (one variant per flaw form, so every form is judged at least once)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from foundation.settings import REPO_ROOT
from lab.catalogue import Catalogue, catalogue_root

SCENARIO = Catalogue(catalogue_root(REPO_ROOT)).get("08")
MODULE = SCENARIO.module()
DIMENSIONS = {
    name: [c.value for c in choices] for name, choices in SCENARIO.manifest.variants.items()
}
ALL = list(itertools.product(*DIMENSIONS.values()))
# Each fitting, evaluation and inputs form appears at least once.
COVERING = [
    ("segment_weights_merchant", "held_out_union", "reindex"),
    ("segment_weights_region", "whole_window", "request_only"),
    ("class_weight", "slices_on_train", "assign_nan"),
    ("calibration", "held_out_union", "request_only"),
]


def base_source() -> str:
    return subprocess.run(
        ["git", "show", f"HEAD:{MODULE.TARGET}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_every_variant_applies_compiles_and_differs_from_the_others() -> None:
    source = base_source()
    flawed = {}
    for forms in ALL:
        text = MODULE.flawed_training(source, *forms)
        fixed = MODULE.fixed_training(text, *forms)
        wrong = MODULE.fixed_training(text, *forms, wrong=True)
        for version in (text, fixed, wrong):
            compile(version, MODULE.TARGET, "exec")
        assert len({source, text, fixed, wrong}) == 4, forms
        flawed[forms] = text
    assert len(set(flawed.values())) == len(ALL)


def test_commit_messages_and_branch_names_name_no_flaw() -> None:
    tells = [t.lower() for t in SCENARIO.manifest.tells]
    texts = [MODULE.commit_message(*forms)[1] for forms in ALL] + list(MODULE.BRANCHES)
    for text in texts:
        for tell in tells:
            assert tell not in text.lower(), f"{tell!r} in {text!r}"


def run_checks(tree: Path, training_text: str) -> dict[str, bool]:
    (tree / MODULE.TARGET).write_text(training_text)
    result = subprocess.run(
        [sys.executable, "-"],
        cwd=tree,
        env=MODULE._checks_environment(),
        input=SCENARIO.text(MODULE.CHECKS_SCRIPT),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    verdicts = json.loads(result.stdout.strip().splitlines()[-1])
    return {name: verdict["ok"] for name, verdict in verdicts.items()}


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """The committed code of this checkout, where the training module can be swapped."""
    root = tmp_path_factory.mktemp("review-tree")
    archive = subprocess.run(
        ["git", "archive", "HEAD"], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("forms", COVERING, ids=["-".join(f) for f in COVERING])
def test_the_hidden_checks_fail_each_flaw_and_pass_its_fix(tree: Path, forms) -> None:
    flawed = MODULE.flawed_training(base_source(), *forms)
    assert run_checks(tree, flawed) == {
        "runs": True,
        "fitting": False,
        "evaluation": False,
        "inputs": False,
    }
    assert all(run_checks(tree, MODULE.fixed_training(flawed, *forms)).values())
    wrong = run_checks(tree, MODULE.fixed_training(flawed, *forms, wrong=True))
    assert wrong == {"runs": True, "fitting": False, "evaluation": True, "inputs": True}
