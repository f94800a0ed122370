"""Promotion with teeth, end to end on the shared stack: `fraudlab promote` at its DEFAULT tolerances.

Each faulty challenger is a real model made by the real pipeline, and each must be stopped by
the gate that exists for its fault, with the champion (and what serving runs) unchanged:

- a WORSE model: trained with a weakened LightGBM configuration (settings, not a test hook);
- a LEAKY model: trained on the feature service ``fraud_model_v2``, whose dispute table counts
  chargebacks by purchase day with hindsight (values not known at decision time). It looks far
  better on the holdout; only the leakage screen stands between it and production; a partly
  leaky one (``fraud_model_v3``, per merchant) is stopped by the availability rule alone;
- a BROKEN ONNX export: the pipeline's stages run, then the graph in the run's bundle is
  replaced by one exported without the calibration before the run is registered.

A GENUINELY BETTER model passes every gate at the default tolerances: the champion is first
made weak by the same training knob, then a normal retrain beats it on the same holdout; it is
promoted, serving follows it, and ``rollback`` restores the weak one.

Sends no ``/score`` requests (serving's version is read through ``POST /reload``), and leaves
the registry as found (champion restored, no challenger or previous_champion) for the other
files sharing the stack.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest

from model.registry import CHALLENGER, CHAMPION, client, resolve_alias, set_alias
from pipelines.gates import PREVIOUS_CHAMPION

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVING_FOLLOWS_S = 15.0
GATES = (
    "quality",
    "calibration",
    "slices",
    "onnx_parity",
    "latency",
    "data_validation",
    "leakage",
)
# A training configuration that starves the model: four leaves, a fifth of the features per
# tree, forty rounds. On the small world's holdout it loses ~0.15 PR-AUC.
WEAK = {
    "FRAUDLAB_TRAIN_LGBM_PARAMS": json.dumps({"num_leaves": 4, "feature_fraction": 0.2}),
    "FRAUDLAB_TRAIN_NUM_BOOST_ROUND": "40",
}
LEAKY = {"FRAUDLAB_FEATURE_SERVICE": "fraud_model_v2"}


def cli(stack, *args: str, env: dict[str, str] | None = None, timeout: float = 600):
    return subprocess.run(
        [sys.executable, "-m", "fraudlab.cli", *args],
        env={**stack.env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def verdicts(output: str) -> dict[str, bool]:
    """Gate name → passed, read from the markdown table `fraudlab promote` prints."""
    found = {}
    for gate in GATES:
        if f"| {gate} | PASS |" in output:
            found[gate] = True
        elif f"| {gate} | **FAIL** |" in output:
            found[gate] = False
    assert set(found) == set(GATES), output
    return found


def latest_report(settings) -> dict:
    reports = sorted(settings.gates_dir.glob("*/gates.json"))
    assert reports, "no gate report written under <home>/gates/"
    return json.loads(reports[-1].read_text())


def serving_version(stack, expected: str) -> str:
    """Poll until serving runs ``expected`` (or the deadline passes); returns what it runs."""
    deadline = time.monotonic() + SERVING_FOLLOWS_S
    version = ""
    while time.monotonic() < deadline:
        response = httpx.post(f"{stack.url}/reload", json={}, timeout=30.0)
        response.raise_for_status()
        version = response.json()["model_version"]
        if version == expected:
            return version
        time.sleep(1.0)
    return version


def train_challenger(stack, env: dict[str, str] | None = None) -> str:
    started = time.perf_counter()
    trained = cli(stack, "train", "--no-promote", env=env)
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    challenger = resolve_alias(stack.settings, CHALLENGER)
    assert challenger is not None
    print(f"\ntrain --no-promote {env or ''}: {time.perf_counter() - started:.1f}s")
    return challenger[0]


def promote(stack) -> subprocess.CompletedProcess:
    started = time.perf_counter()
    result = cli(stack, "promote")
    print(f"promote: {time.perf_counter() - started:.1f}s (exit {result.returncode})")
    print(result.stdout)
    return result


def status_output(stack) -> str:
    """`fraudlab status` as printed, wide enough that no table cell wraps."""
    shown = cli(stack, "status", env={"COLUMNS": "250"}, timeout=120)
    return shown.stdout + shown.stderr


def assert_refused(stack, champion: str, challenger: str, result) -> dict[str, bool]:
    """Exit 1, the champion and serving unchanged; returns each gate's verdict."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"champion stays v{champion}" in result.stdout
    assert resolve_alias(stack.settings, CHAMPION)[0] == champion
    report = latest_report(stack.settings)
    assert report["challenger"]["version"] == challenger and not report["passed"]
    assert serving_version(stack, champion) == champion
    return verdicts(result.stdout)


@pytest.fixture(scope="module", autouse=True)
def registry_as_found(stack):
    """Put the champion back and clear the other aliases when the module ends."""
    settings = stack.settings
    champion = resolve_alias(settings, CHAMPION)
    assert champion is not None
    yield champion[0]
    set_alias(settings, CHAMPION, champion[0])
    for alias in (CHALLENGER, PREVIOUS_CHAMPION):
        if resolve_alias(settings, alias) is not None:
            client(settings).delete_registered_model_alias(settings.model_name, alias)
    assert serving_version(stack, champion[0]) == champion[0]


@pytest.fixture
def no_challenger_left(stack):
    """A refused challenger keeps its alias; clear it so the next test starts clean."""
    yield
    if resolve_alias(stack.settings, CHALLENGER) is not None:
        client(stack.settings).delete_registered_model_alias(stack.settings.model_name, CHALLENGER)


def test_promote_without_a_challenger_says_what_to_run(stack) -> None:
    result = stack.cli("promote")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no 'challenger'" in result.stdout
    assert "fraudlab train --no-promote" in result.stdout


def test_a_worse_model_fails_the_quality_gate(stack, registry_as_found, no_challenger_left):
    champion = registry_as_found
    challenger = train_challenger(stack, WEAK)
    verdict = assert_refused(stack, champion, challenger, promote(stack))
    assert verdict["quality"] is False
    # nothing else is wrong with it: a correct export, fast, clean data, no leak
    assert verdict["onnx_parity"] and verdict["latency"] and verdict["leakage"]
    quality = next(g for g in latest_report(stack.settings)["gates"] if g["name"] == "quality")
    assert quality["details"]["challenger"]["pr_auc"] < quality["details"]["champion"]["pr_auc"]

    # the refused model made champion by hand anyway: served, and status says it failed
    set_alias(stack.settings, CHAMPION, challenger)
    try:
        assert serving_version(stack, challenger) == challenger
        shown = status_output(stack)
        assert f"model version {challenger}, gates failed" in shown, shown
        assert f"champion v{challenger} FAILED the promotion gates" in shown, shown
    finally:
        set_alias(stack.settings, CHAMPION, champion)
    assert serving_version(stack, champion) == champion


def test_a_champion_moved_by_hand_to_an_ungated_version_shows_never_gated(
    stack, registry_as_found, no_challenger_left
) -> None:
    champion = registry_as_found
    ungated = train_challenger(stack)  # registered, never judged by `fraudlab promote`
    set_alias(stack.settings, CHAMPION, ungated)
    try:
        assert serving_version(stack, ungated) == ungated
        shown = status_output(stack)
        assert f"model version {ungated}, never gated" in shown, shown
        assert f"champion v{ungated} was never gated" in shown, shown
    finally:
        set_alias(stack.settings, CHAMPION, champion)
    assert serving_version(stack, champion) == champion


def test_a_leaky_model_looks_better_and_only_the_leakage_screen_stops_it(
    stack, registry_as_found, no_challenger_left
):
    champion = registry_as_found
    challenger = train_challenger(stack, LEAKY)
    verdict = assert_refused(stack, champion, challenger, promote(stack))
    assert {gate for gate, passed in verdict.items() if not passed} == {"leakage"}
    gates = {g["name"]: g for g in latest_report(stack.settings)["gates"]}
    # the leak makes it look better than the champion on the very same holdout
    quality = gates["quality"]["details"]
    assert quality["challenger"]["pr_auc"] > quality["champion"]["pr_auc"] + 0.05
    # caught by both rules: values available only after the decision, and a lone separator
    leakage = gates["leakage"]["details"]
    assert leakage["late_rows"].get("user_disputes_available_ts", 0) > 0
    assert leakage["univariate_auc"]["user_disputed_txn_count_7d"] >= leakage["max_auc"]
    assert "user_disputes_available_ts" in gates["leakage"]["summary"]


def test_a_partly_leaky_merchant_model_is_stopped_by_the_availability_rule(
    stack, registry_as_found, no_challenger_left
):
    """fraud_model_v3's merchant dispute count leaks less than the user count: no lone feature
    separates the classes, yet its availability column shows values joined from the future.
    ``gates.screen`` judges any registered model the same way (e.g. a champion that skipped
    the gates)."""
    from model.registry import download_bundle
    from pipelines import gates

    champion = registry_as_found
    challenger = train_challenger(stack, {"FRAUDLAB_FEATURE_SERVICE": "fraud_model_v3"})
    verdict = assert_refused(stack, champion, challenger, promote(stack))
    assert verdict["leakage"] is False
    leakage = next(g for g in latest_report(stack.settings)["gates"] if g["name"] == "leakage")
    assert leakage["details"]["late_rows"].get("merchant_disputes_available_ts", 0) > 0
    assert "merchant_disputes_available_ts" in leakage["summary"]

    cache = stack.settings.gates_dir / "bundles"
    screened = {}
    for version in (champion, challenger):
        found = client(stack.settings).get_model_version(stack.settings.model_name, version)
        bundle = download_bundle(stack.settings, version, found.run_id, cache)
        screened[version] = {g.name: g.passed for g in gates.screen(stack.settings, bundle)}
    assert screened[champion] == {"onnx_parity": True, "leakage": True}
    assert screened[challenger] == {"onnx_parity": True, "leakage": False}


def test_a_broken_onnx_export_fails_the_parity_gate(stack, registry_as_found, no_challenger_left):
    """The stages of a normal retrain, with the bundle's graph exported without its calibration
    (the native model in the bundle is intact): registered as challenger, refused on parity."""
    import onnx

    from model import export
    from model.registry import ONNX_FILE
    from pipelines import training

    settings = stack.settings
    champion = registry_as_found
    run = training.start_run(settings, reason="test: broken export")
    training.validate_raw_data(settings, run)
    training.write_training_set(settings, run)
    model = training.train(settings, run)
    training.evaluate(settings, run)  # the pipeline's own export passes its parity check
    lost = export.to_onnx(
        model.booster, export.PlattCalibration(1.0, 0.0), len(model.booster.feature_name())
    )
    onnx.save(lost, run.bundle / ONNX_FILE)
    challenger = training.register(settings, run, CHALLENGER)

    verdict = assert_refused(stack, champion, challenger, promote(stack))
    assert verdict["onnx_parity"] is False
    parity = next(g for g in latest_report(stack.settings)["gates"] if g["name"] == "onnx_parity")
    assert parity["details"]["share_rows_differing"] > 0.5
    assert verdict["leakage"] and verdict["latency"] and verdict["data_validation"]


def test_a_better_model_passes_at_default_tolerances_is_served_and_rolled_back(
    stack, registry_as_found
) -> None:
    settings = stack.settings
    weak = cli(stack, "train", env=WEAK)  # straight to champion, as a bootstrap does
    assert weak.returncode == 0, weak.stdout[-3000:] + weak.stderr[-3000:]
    weak_champion = resolve_alias(settings, CHAMPION)[0]
    assert weak_champion != registry_as_found
    assert serving_version(stack, weak_champion) == weak_champion

    better = train_challenger(stack)
    result = promote(stack)
    assert result.returncode == 0, result.stdout + result.stderr
    assert all(verdicts(result.stdout).values())
    report = latest_report(settings)
    assert report["passed"] and report["challenger"]["version"] == better
    quality = next(g for g in report["gates"] if g["name"] == "quality")["details"]
    assert quality["pr_auc_tolerance"] == 0.01 and quality["cost_tolerance"] == 0.02  # defaults
    assert quality["challenger"]["pr_auc"] > quality["champion"]["pr_auc"] + 0.05
    assert quality["challenger"]["expected_cost"] < quality["champion"]["expected_cost"]
    assert resolve_alias(settings, CHAMPION)[0] == better
    assert resolve_alias(settings, PREVIOUS_CHAMPION)[0] == weak_champion
    assert resolve_alias(settings, CHALLENGER) is None

    assert serving_version(stack, better) == better
    shown = status_output(stack)
    assert f"model version {better}, gates passed" in shown, shown
    assert "promotion gates" not in shown  # no warning line

    rolled = stack.cli("rollback")
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert f"v{better} → v{weak_champion}" in rolled.stdout
    assert resolve_alias(settings, CHAMPION)[0] == weak_champion
    assert serving_version(stack, weak_champion) == weak_champion

    again = stack.cli("rollback")
    assert again.returncode == 2 and "nothing to roll back to" in again.stderr
