"""The promotion gates on synthetic frames: each gate fails the fault it exists for."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from model import export
from pipelines import gates
from pipelines.validation import ValidationResult

N = 6000
FEATURES = ["f_signal", "f_weak", "f_noise"]
SLICES = {"region": "region"}


@pytest.fixture(scope="module")
def world() -> dict:
    rng = np.random.default_rng(0)
    y = (rng.random(N) < 0.05).astype(int)
    x = np.column_stack(
        [
            y * 1.2 + rng.normal(0, 1, N),  # a real but imperfect signal
            y * 0.4 + rng.normal(0, 1, N),
            rng.normal(0, 1, N),
        ]
    )
    score = 1 / (1 + np.exp(-(x[:, 0] * 2.0 + x[:, 1] - 4)))
    region = np.where(np.arange(N) % 2 == 0, "EU", "NA")
    return {
        "y": y,
        "x": x,
        "amount": rng.gamma(2.0, 60.0, N),
        "score": score,
        "slices": pd.DataFrame({"y": y, "amount": rng.gamma(2.0, 60.0, N), "region": region}),
    }


def model(score: np.ndarray, threshold: float = 0.2, version: str = "1") -> gates.ScoredModel:
    return gates.ScoredModel(version, np.asarray(score, dtype=float), threshold)


def quality(world, challenger_score) -> gates.GateResult:
    return gates.quality_gate(
        world["y"],
        world["amount"],
        model(world["score"]),
        model(challenger_score, version="2"),
        false_decline_cost=5.0,
        pr_auc_tolerance=0.01,
        cost_tolerance=0.02,
    )


def test_an_equal_model_passes_quality(world) -> None:
    result = quality(world, world["score"].copy())
    assert result.passed, result.summary
    assert result.details["challenger"]["pr_auc"] == result.details["champion"]["pr_auc"]


def test_a_better_model_passes_quality(world) -> None:
    better = np.clip(world["score"] + 0.3 * world["y"], 0, 1)
    assert quality(world, better).passed


def test_shuffled_scores_fail_quality(world) -> None:
    shuffled = np.random.default_rng(1).permutation(world["score"])
    result = quality(world, shuffled)
    assert not result.passed
    assert result.details["challenger"]["pr_auc"] < result.details["champion"]["pr_auc"] - 0.1


def test_shuffled_scores_fail_quality_even_at_loose_tolerances(world) -> None:
    shuffled = np.random.default_rng(1).permutation(world["score"])
    result = gates.quality_gate(
        world["y"],
        world["amount"],
        model(world["score"]),
        model(shuffled, version="2"),
        5.0,
        pr_auc_tolerance=0.05,
        cost_tolerance=1.0,
    )
    assert not result.passed


def test_a_costlier_threshold_fails_quality_even_with_equal_pr_auc(world) -> None:
    # identical ranking, but declining nobody: every fraud amount is paid
    result = gates.quality_gate(
        world["y"],
        world["amount"],
        model(world["score"]),
        model(world["score"], threshold=1.1, version="2"),
        5.0,
        0.01,
        0.02,
    )
    assert not result.passed
    assert "expected cost" in result.summary


def slices(world, challenger_score) -> gates.GateResult:
    return gates.slice_gate(
        world["slices"],
        SLICES,
        model(world["score"]),
        model(challenger_score, version="2"),
        false_decline_cost=5.0,
        tolerance=0.05,
        min_positives=10,
    )


def test_equal_slices_pass(world) -> None:
    result = slices(world, world["score"].copy())
    assert result.passed, result.summary
    assert {r["value"] for r in result.details["compared"]} == {"EU", "NA"}


def test_a_collapsed_slice_fails(world) -> None:
    collapsed = world["score"].copy()
    na = (world["slices"]["region"] == "NA").to_numpy()
    collapsed[na] = np.random.default_rng(2).permutation(collapsed[na])
    result = slices(world, collapsed)
    assert not result.passed
    assert [r["value"] for r in result.details["regressions"]] == ["NA"]
    assert "region=NA" in result.summary


def test_a_slice_with_too_few_frauds_cannot_fail(world) -> None:
    frame = world["slices"].copy()
    tiny = np.flatnonzero(frame["y"].to_numpy() == 1)[:3]
    frame.loc[tiny, "region"] = "MEA"  # three frauds: below min_positives
    collapsed = world["score"].copy()
    collapsed[tiny] = 0.0
    result = gates.slice_gate(
        frame, SLICES, model(world["score"]), model(collapsed, version="2"), 5.0, 0.05, 10
    )
    assert "MEA" not in {r["value"] for r in result.details["compared"]}


def fitted(x: np.ndarray, y: np.ndarray, seed: int):
    import lightgbm as lgb

    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_threads": 1, "seed": seed, "num_leaves": 7},
        lgb.Dataset(x, y, feature_name=FEATURES),
        30,
    )
    calibration = export.PlattCalibration(1.0, 0.0)
    onnx_model = export.to_onnx(booster, calibration, x.shape[1])
    return booster, calibration, export.onnx_session(onnx_model.SerializeToString())


@pytest.fixture(scope="module")
def two_models(world):
    x, y = world["x"], world["y"]
    flipped = 1 - y  # a model of another target: its graph scores differently everywhere
    return fitted(x, y, 1), fitted(x, flipped, 2)


def test_parity_passes_for_the_models_own_graph(world, two_models) -> None:
    booster, calibration, session = two_models[0]
    result = gates.parity_gate(booster, calibration, session, world["x"], 0.2)
    assert result.passed, result.summary


def test_parity_fails_when_the_graph_is_another_models(world, two_models) -> None:
    (booster, calibration, _), (_, _, other_session) = two_models
    result = gates.parity_gate(booster, calibration, other_session, world["x"], 0.2)
    assert not result.passed
    assert result.details["share_rows_differing"] > 0.5


def test_latency_gate_judges_p99_against_the_budget(world, two_models) -> None:
    _, _, session = two_models[0]
    generous = gates.latency_gate(session, world["x"], budget_us=1e6, n=200)
    assert generous.passed
    impossible = gates.latency_gate(session, world["x"], budget_us=0.001, n=200)
    assert not impossible.passed
    assert impossible.details["onnx_p99_us"] > 0
    assert len(impossible.details["attempts"]) == 3  # retried before failing


def test_a_label_copy_fails_the_leakage_screen(world) -> None:
    rng = np.random.default_rng(3)
    leaky = world["y"] + rng.normal(0, 0.01, N)
    x = np.column_stack([world["x"], leaky])
    order = [*FEATURES, "f_leak"]
    result = gates.leakage_gate(order, order, x, world["y"], max_auc=0.98)
    assert not result.passed
    assert "f_leak" in result.summary
    assert result.details["univariate_auc"]["f_leak"] > 0.99


def test_an_inverted_label_copy_fails_too(world) -> None:
    x = np.column_stack([world["x"], -world["y"].astype(float)])
    order = [*FEATURES, "f_leak"]
    assert not gates.leakage_gate(order, order, x, world["y"], max_auc=0.98).passed


def test_honest_features_pass_the_leakage_screen(world) -> None:
    result = gates.leakage_gate(FEATURES, FEATURES, world["x"], world["y"], max_auc=0.98)
    assert result.passed, result.summary
    assert result.details["univariate_auc"]["f_signal"] < 0.98


def test_an_input_outside_the_feature_service_fails_the_leakage_screen(world) -> None:
    result = gates.leakage_gate(FEATURES, FEATURES[:2], world["x"], world["y"], max_auc=0.98)
    assert not result.passed
    assert result.details["unknown_features"] == ["f_noise"]


def test_a_stored_value_from_after_the_event_fails_the_leakage_screen(world) -> None:
    events = pd.to_datetime(["2026-02-01 10:00", "2026-02-01 11:00"], utc=True)
    epoch = events.astype("int64") // 10**9
    frame = pd.DataFrame(
        {"event_timestamp": events, "last_txn_ts": [epoch[0] - 60, epoch[1] + 3600]}
    )
    late = gates.late_timestamp_rows(frame, ["last_txn_ts"])
    assert late == {"last_txn_ts": 1}
    result = gates.leakage_gate(FEATURES, FEATURES, world["x"], world["y"], 0.98, late)
    assert not result.passed
    assert "last_txn_ts (1 rows)" in result.summary


def test_the_holdout_is_the_latest_matured_window_and_says_when_a_model_saw_it(
    tmp_path,
) -> None:
    from foundation.settings import Settings

    settings = Settings(_env_file=None, home=tmp_path, label_maturity_days=21, gate_holdout_days=7)
    clock = pd.Timestamp("2026-03-02")
    start, end, overlaps = gates.holdout_window(settings, clock, [pd.Timestamp("2026-01-20")])
    assert (start, end) == (pd.Timestamp("2026-02-02"), pd.Timestamp("2026-02-09"))
    assert not overlaps  # trained before the window: a genuinely fresh holdout
    _, _, overlaps = gates.holdout_window(
        settings, clock, [pd.Timestamp("2026-01-20"), pd.Timestamp("2026-02-09")]
    )
    assert overlaps


def validation_result(passed: bool) -> ValidationResult:
    failures = () if passed else ("label: a fraud rate outside the bounds",)
    return ValidationResult("training set", passed, 100, 20, failures, 0.1)


def test_data_validation_gate() -> None:
    evidence = "raw transactions: passed of 12 checks on 1,000 rows"
    assert gates.data_validation_gate(evidence, [validation_result(True)]).passed
    assert not gates.data_validation_gate(evidence, [validation_result(False)]).passed
    assert not gates.data_validation_gate(None, [validation_result(True)]).passed
    assert not gates.data_validation_gate("training set: FAILED 1 of 20", []).passed


def test_report_names_each_gate_and_the_verdict(world, tmp_path) -> None:
    results = [quality(world, world["score"]), slices(world, world["score"])]
    report = {
        "champion": {"version": "1"},
        "challenger": {"version": "2"},
        "holdout": {
            "start": "2026-02-01T00:00:00",
            "end": "2026-02-08T00:00:00",
            "labels_as_of": "2026-03-01T00:00:00",
            "n": N,
            "positives": int(world["y"].sum()),
            "overlaps_training": True,
        },
        "gates": [gates.asdict(r) for r in results],
        "passed": all(r.passed for r in results),
        "action": "champion moved",
    }
    json_path, md_path = gates.write_report(report, tmp_path / "g")
    text = md_path.read_text()
    assert "| quality | PASS |" in text and "| slices | PASS |" in text
    assert "PASS: every gate passed" in text
    assert json_path.exists()


def test_rows_on_the_threshold_do_not_fail_parity_but_a_lost_calibration_does(world) -> None:
    """A small model has few distinct scores and its threshold is one of them: float32 puts
    those rows on either side of it. That is the graph's precision; dropping the calibration
    from the graph is a broken export."""
    import lightgbm as lgb

    x, y = world["x"], world["y"]
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_threads": 1, "num_leaves": 2},
        lgb.Dataset(x, y, feature_name=FEATURES),
        3,
    )
    calibration = export.fit_platt(booster.predict(x), y)
    session = export.onnx_session(export.to_onnx(booster, calibration, 3).SerializeToString())
    scores = export.native_scores(booster, calibration, x.astype(np.float32).astype(float))
    values, counts = np.unique(scores, return_counts=True)
    threshold = float(values[np.argmax(counts * (values > np.median(scores)))])
    assert np.mean(scores == threshold) > 0.05  # many rows exactly on the threshold
    assert gates.parity_gate(booster, calibration, session, x, threshold).passed

    lost = export.onnx_session(
        export.to_onnx(booster, export.PlattCalibration(1.0, 0.0), 3).SerializeToString()
    )
    broken = gates.parity_gate(booster, calibration, lost, x, threshold)
    assert not broken.passed
    assert broken.details["share_rows_differing"] > 0.5


def test_a_leak_is_named_once_with_its_numbers(world) -> None:
    late = {"user_disputes_available_ts": 12}
    x = np.column_stack([world["x"], world["y"].astype(float)])
    order = [*FEATURES, "f_leak"]
    result = gates.leakage_gate(order, order, x, world["y"], 0.98, late)
    assert not result.passed
    assert "user_disputes_available_ts (12 rows)" in result.summary
    assert result.summary.count("f_leak AUC") == 1


# --- calibration: a model whose scores stopped meaning probabilities ------------------------


def trained(world, seed: int, bagging: float = 0.8):
    """A model made the pipeline's way on the world: LightGBM with fraud up-weighted on the
    first half, Platt calibration and the threshold on the next quarter (validation); the last
    quarter is the holdout. Returns (booster, calibration, validation rows)."""
    import lightgbm as lgb

    x, y = world["x"], world["y"]
    train, valid = slice(0, N // 2), slice(N // 2, 3 * N // 4)
    params = {
        "objective": "binary",
        "verbose": -1,
        "num_threads": 1,
        "seed": seed,
        "num_leaves": 7,
        "scale_pos_weight": 10.0,  # as training: the raw probability overstates fraud
        "bagging_fraction": bagging,
        "bagging_freq": 1,
    }
    booster = lgb.train(params, lgb.Dataset(x[train], y[train], feature_name=FEATURES), 60)
    calibration = export.fit_platt(booster.predict(x[valid]), y[valid])
    return booster, calibration, valid


def shipped(world, score_of, valid) -> gates.ScoredModel:
    """The model serving would run: ``score_of(x)`` on the holdout, its threshold chosen by
    training's rule on its own validation scores."""
    from model import decision

    x, y, amount = world["x"], world["y"], world["amount"]
    threshold = decision.choose_robust_threshold(
        y[valid], score_of(x[valid]), amount[valid], 5.0
    ).threshold
    holdout = slice(3 * N // 4, N)
    return gates.ScoredModel("2", score_of(x[holdout]), threshold)


@pytest.fixture(scope="module")
def calibration_models(world) -> dict[str, gates.ScoredModel]:
    booster, calibration, valid = trained(world, seed=1)
    retrained, recalibrated, _ = trained(world, seed=2, bagging=0.7)

    def shifted(x):  # +1.5 logits on top of the calibration
        p = calibration.apply(booster.predict(x))
        return 1 / (1 + np.exp(-(np.log(p) - np.log1p(-p) + 1.5)))

    return {
        "champion": shipped(world, lambda x: calibration.apply(booster.predict(x)), valid),
        "retrain": shipped(world, lambda x: recalibrated.apply(retrained.predict(x)), valid),
        "raw": shipped(world, booster.predict, valid),
        "shifted": shipped(world, shifted, valid),
    }


def calibration(world, models, challenger: str) -> gates.GateResult:
    from foundation.settings import Settings

    defaults = Settings(_env_file=None)
    return gates.calibration_gate(
        world["y"][3 * N // 4 :],
        models["champion"],
        models[challenger],
        defaults.gate_brier_tolerance,
        defaults.gate_calibration_tolerance,
        defaults.gate_calibration_ratio,
        defaults.gate_decline_rate_band,
    )


def test_a_healthy_retrain_passes_the_calibration_gate(world, calibration_models) -> None:
    result = calibration(world, calibration_models, "retrain")
    assert result.passed, result.summary
    assert result.details["failed"] == []


@pytest.mark.parametrize("broken", ["raw", "shifted"])
def test_a_model_without_its_calibration_or_shifted_fails_the_calibration_gate(
    world, calibration_models, broken: str
) -> None:
    result = calibration(world, calibration_models, broken)
    assert not result.passed, result.summary
    details = result.details
    assert details["challenger"]["brier"] > details["champion"]["brier"]
    assert details["challenger"]["mean_score"] > 1.5 * details["champion"]["mean_score"]
    assert "out of bounds" in result.summary


def test_the_same_ranking_passes_quality_yet_fails_calibration(world, calibration_models):
    """Why the gate exists: PR-AUC cannot see a shifted calibration."""
    y, amount = world["y"][3 * N // 4 :], world["amount"][3 * N // 4 :]
    champion, shifted = calibration_models["champion"], calibration_models["shifted"]
    quality = gates.quality_gate(y, amount, champion, shifted, 5.0, 0.01, 1.0)
    assert quality.details["challenger"]["pr_auc"] == pytest.approx(
        quality.details["champion"]["pr_auc"]
    )
    assert not calibration(world, calibration_models, "shifted").passed


def test_a_threshold_moved_to_decline_a_fifth_as_much_fails_the_calibration_gate(
    world, calibration_models
) -> None:
    champion = calibration_models["champion"]
    rate = float(np.mean(champion.score >= champion.threshold))
    strict = gates.ScoredModel(
        "2", champion.score, float(np.quantile(champion.score, 1 - rate / 5))
    )
    result = calibration(world, {**calibration_models, "strict": strict}, "strict")
    assert result.details["failed"] == ["decline rate"]  # same scores: calibration unchanged
    assert result.details["decline_rate_ratio"] == pytest.approx(0.2, abs=0.02)


def test_a_challenger_back_at_the_champions_approved_decline_rate_passes(
    world, calibration_models
) -> None:
    """After drift the champion may be the one off its rate: a challenger declining what the
    champion declined on its own test split is not refused for differing from it now."""
    from foundation.settings import Settings

    defaults = Settings(_env_file=None)
    champion = calibration_models["champion"]
    rate = float(np.mean(champion.score >= champion.threshold))
    strict = gates.ScoredModel(
        "2", champion.score, float(np.quantile(champion.score, 1 - rate / 5))
    )

    def judged(test_rate):
        return gates.calibration_gate(
            world["y"][3 * N // 4 :],
            champion,
            strict,
            defaults.gate_brier_tolerance,
            defaults.gate_calibration_tolerance,
            defaults.gate_calibration_ratio,
            defaults.gate_decline_rate_band,
            champion_test_decline_rate=test_rate,
        )

    assert judged(rate / 4).passed  # the champion's approved rate was that low
    refused = judged(rate)
    assert refused.details["failed"] == ["decline rate"]
    assert "test split" in refused.summary
