"""Behavioural tests of the trained model: directional expectations and invariances.

Changes are made to the raw request and stored features, then passed through the shared
transform — the way a real transaction would reach the model.
"""

from __future__ import annotations

import numpy as np
import pytest

from model import evaluation

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def legit(trained):
    frame = trained.training_set.frame
    test = frame[(frame["split"] == "test") & (frame["label"] == 0)]
    # ordinary customers: a known device, a home-region purchase, modest amount
    ordinary = test[
        (test["user_device_txn_count_30d"] > 3)
        & (test["ip_region"] == test["home_region"])
        & (test["amount"] < 150)
    ]
    return ordinary.sample(min(len(ordinary), 500), random_state=0).reset_index(drop=True)


def test_model_learns_the_fraud_patterns(trained) -> None:
    frame = trained.training_set.frame
    test = (frame["split"] == "test").to_numpy()
    score = trained.score_frame(frame[test])
    pr_auc = evaluation.classification_metrics(
        frame["label"].to_numpy()[test], score, frame["amount"].to_numpy()[test], 0.5, 5.0
    )["pr_auc"]
    base_rate = frame["label"].to_numpy()[test].mean()
    assert pr_auc > 10 * base_rate  # far better than guessing


def test_new_device_and_high_amount_raise_the_score(trained, legit) -> None:
    before = trained.score_frame(legit)
    takeover = legit.copy()
    takeover["user_device_txn_count_30d"] = np.nan  # a device never seen for this customer
    takeover["amount"] = legit["amount"] * 10
    after = trained.score_frame(takeover)
    assert np.mean(after > before) > 0.9
    assert np.median(after / np.maximum(before, 1e-9)) > 3


def test_a_burst_of_tiny_amounts_raises_the_score(trained, legit) -> None:
    before = trained.score_frame(legit)
    testing = legit.copy()
    testing["amount"] = 1.0
    testing["last_txn_ts"] = (legit["event_timestamp"].astype("int64") / 1e9) - 30
    testing["velocity_1h"] = 6.0
    testing["small_velocity_1h"] = 6.0
    after = trained.score_frame(testing)
    assert np.mean(after > before) > 0.9


def test_purchase_abroad_does_not_lower_the_score(trained, legit) -> None:
    before = trained.score_frame(legit)
    abroad = legit.copy()
    abroad["ip_region"] = np.where(legit["home_region"] == "APAC", "LATAM", "APAC")
    after = trained.score_frame(abroad)
    assert np.mean(after >= before - 1e-9) > 0.9


def test_identifiers_do_not_matter_only_what_is_known_about_them(trained, legit) -> None:
    """Same features, other ids (customer, merchant, device, transaction): same score."""
    before = trained.score_frame(legit)
    renamed = legit.copy()
    rng = np.random.default_rng(1)
    for column in ("user_id", "merchant_id", "device_id", "txn_id"):
        renamed[column] = rng.permutation(legit[column].to_numpy())
    assert np.array_equal(trained.score_frame(renamed), before)


def test_calibrated_scores_track_the_observed_fraud_rate(trained) -> None:
    frame = trained.training_set.frame
    test = (frame["split"] == "test").to_numpy()
    score = trained.score_frame(frame[test])
    observed = frame["label"].to_numpy()[test].mean()
    assert score.mean() == pytest.approx(observed, rel=0.5)
