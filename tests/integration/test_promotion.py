"""Promotion end to end: a retrained challenger passes the gates, serving follows, rollback.

Uses the shared stack. It sends no ``/score`` requests (serving's version is read through
``POST /reload``), so the prediction-log counts other integration tests assert stay intact.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest

from pipelines.gates import PREVIOUS_CHAMPION
from pipelines.registry import CHALLENGER, CHAMPION, resolve_alias

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVING_FOLLOWS_S = 15.0
# The small world's 7-day holdout holds ~70 frauds: one missed fraud moves expected cost by
# several per cent, and Feast's point-in-time join breaks ties between same-second velocity rows
# arbitrarily, so a retrain on the same data is equal in quality but not always bit-identical.
# Tolerances are tunables for exactly this: sized here to the holdout, they still fail a model
# whose ranking is lost (the unit tests pin each gate's teeth at the default tolerances).
SMALL_HOLDOUT_TOLERANCES = {
    "FRAUDLAB_GATE_HOLDOUT_DAYS": "14",
    "FRAUDLAB_GATE_PR_AUC_TOLERANCE": "0.05",
    "FRAUDLAB_GATE_COST_TOLERANCE": "1.0",
    "FRAUDLAB_GATE_SLICE_TOLERANCE": "0.15",
}


def promote(stack) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fraudlab.cli", "promote"],
        env={**stack.env, **SMALL_HOLDOUT_TOLERANCES},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def serving_version(stack, expected: str) -> str:
    """Poll until serving runs ``expected`` (or the deadline passes); returns what it runs."""
    deadline = time.monotonic() + SERVING_FOLLOWS_S
    version = ""
    while time.monotonic() < deadline:
        response = httpx.post(f"{stack.url}/reload", json={}, timeout=10.0)
        response.raise_for_status()
        version = response.json()["model_version"]
        if version == expected:
            return version
        time.sleep(1.0)
    return version


def test_promote_without_a_challenger_says_what_to_run(stack) -> None:
    result = stack.cli("promote")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no 'challenger'" in result.stdout
    assert "fraudlab train --no-promote" in result.stdout


def test_an_equal_quality_retrain_is_promoted_served_and_rolled_back(stack) -> None:
    settings = stack.settings
    champion_before = resolve_alias(settings, CHAMPION)
    assert champion_before is not None

    started = time.perf_counter()
    trained = stack.cli("train", "--no-promote", timeout=600)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    challenger = resolve_alias(settings, CHALLENGER)
    assert challenger is not None and challenger[0] != champion_before[0]
    train_s = time.perf_counter() - started

    started = time.perf_counter()
    promoted = promote(stack)
    promote_s = time.perf_counter() - started
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    for gate in ("quality", "slices", "onnx_parity", "latency", "data_validation", "leakage"):
        assert f"| {gate} | PASS |" in promoted.stdout, promoted.stdout
    assert resolve_alias(settings, CHAMPION)[0] == challenger[0]
    assert resolve_alias(settings, PREVIOUS_CHAMPION)[0] == champion_before[0]
    assert resolve_alias(settings, CHALLENGER) is None

    reports = sorted(settings.gates_dir.glob("*/gates.json"))
    assert reports, "no gate report written under <home>/gates/"
    report = json.loads(reports[-1].read_text())
    assert report["passed"] and report["challenger"]["version"] == challenger[0]
    assert report["holdout"]["positives"] > 0

    assert serving_version(stack, challenger[0]) == challenger[0]

    rolled = stack.cli("rollback")
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert f"v{challenger[0]} → v{champion_before[0]}" in rolled.stdout
    assert resolve_alias(settings, CHAMPION)[0] == champion_before[0]
    assert serving_version(stack, champion_before[0]) == champion_before[0]

    again = stack.cli("rollback")
    assert again.returncode == 2 and "nothing to roll back to" in again.stderr
    print(f"\ntrain --no-promote {train_s:.1f}s, promote {promote_s:.1f}s")
    print(promoted.stdout)
