"""Cost model, threshold choice and imbalance metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from model import decision, evaluation, slices


def brute_force_threshold(y, score, amount, friction):
    candidates = np.r_[np.unique(score), np.inf]
    costs = [decision.expected_cost(y, score >= t, amount, friction) for t in candidates]
    return min(costs)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_threshold_minimises_expected_cost(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.random(3000) < 0.02
    score = np.clip(rng.normal(0.2 + 0.5 * y, 0.15), 0, 1).round(3)  # ties on purpose
    amount = rng.lognormal(4, 1, 3000)
    t = decision.choose_threshold(y, score, amount, 5.0)
    assert decision.expected_cost(y, score >= t, amount, 5.0) == pytest.approx(
        brute_force_threshold(y, score, amount, 5.0)
    )


def test_threshold_moves_with_friction_cost() -> None:
    rng = np.random.default_rng(3)
    y = rng.random(5000) < 0.01
    score = np.clip(rng.normal(0.1 + 0.6 * y, 0.2), 0, 1)
    amount = np.full(5000, 100.0)
    cheap = decision.choose_threshold(y, score, amount, 1.0)
    dear = decision.choose_threshold(y, score, amount, 50.0)
    assert dear > cheap  # costly declines → decline less


def test_no_fraud_worth_catching_declines_nothing() -> None:
    y = np.array([0, 0, 1, 0])
    score = np.array([0.9, 0.8, 0.1, 0.2])
    amount = np.array([10.0, 10.0, 1.0, 10.0])
    t = decision.choose_threshold(y, score, amount, 5.0)
    assert not (score >= t).any()


def test_expected_cost_counts_missed_amounts_and_friction() -> None:
    y = np.array([1, 1, 0, 0])
    decline = np.array([True, False, True, False])
    amount = np.array([100.0, 40.0, 7.0, 9.0])
    assert decision.expected_cost(y, decline, amount, 5.0) == 40.0 + 5.0


def test_recall_at_fpr() -> None:
    y = np.array([0] * 100 + [1] * 10)
    score = np.r_[np.linspace(0, 0.5, 100), np.linspace(0.45, 1.0, 10)]
    r = evaluation.recall_at_fpr(y, score, 0.0)
    assert 0.8 <= r < 1.0
    assert evaluation.recall_at_fpr(y, score, 1.0) == 1.0


def test_perfect_calibration_has_no_error_and_bad_has_some() -> None:
    rng = np.random.default_rng(0)
    p = rng.random(200_000) * 0.1
    y = rng.random(len(p)) < p
    assert evaluation.calibration_error(y, p) < 0.002
    assert evaluation.calibration_error(y, np.minimum(p * 3, 1)) > 0.05


def test_metrics_and_slices() -> None:
    rng = np.random.default_rng(4)
    n = 4000
    y = (rng.random(n) < 0.05).astype(int)
    score = np.clip(rng.normal(0.1 + 0.5 * y, 0.1), 0, 1)
    frame = pd.DataFrame(
        {
            "y": y,
            "score": score,
            "amount": 50.0,
            "region": np.where(rng.random(n) < 0.5, "EU", "NA"),
            "tiny": np.where(np.arange(n) < 20, "few", "many"),
        }
    )
    m = evaluation.classification_metrics(y, score, frame["amount"].to_numpy(), 0.35, 5.0)
    assert 0.9 < m["pr_auc"] <= 1.0 and m["positives"] == y.sum()
    out = evaluation.slice_metrics(frame, {"region": "region", "tiny": "tiny"}, 0.35, 5.0)
    assert set(out["region"]) == {"EU", "NA"} and "pr_auc" in out["region"]["EU"]
    assert "pr_auc" not in out["tiny"].get("few", {})  # too few frauds to judge


def test_account_age_buckets() -> None:
    got = slices.account_age_bucket(np.array([-1, 5, 29.9, 30, 200, 365, 900]))
    assert list(got) == ["<30d", "<30d", "<30d", "30d-1y", "30d-1y", ">1y", ">1y"]
