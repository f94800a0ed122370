"""Live performance with delayed labels: a recall collapse on transactions whose chargebacks
are mostly in is flagged; the same collapse on transactions too young for their chargebacks
gives no verdict instead of a false alarm (and a healthy model is not flagged either);
unlabelable ids and repeats are counted; each decision is judged at its own threshold."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from foundation.settings import Settings
from model.evaluation import classification_metrics
from monitoring import performance
from monitoring.performance import LabelDelays, PerformancePolicy, compute_performance
from tests.conftest import prediction_record

CLOCK = pd.Timestamp("2026-04-15T00:00:00Z")
DAY = 86_400.0
THRESHOLD = 0.5
POLICY = PerformancePolicy.from_settings(Settings(_env_file=None))  # the shipped defaults


def delay_days(n: int, rng: np.random.Generator) -> np.ndarray:
    """Chargeback delays like the generator's: long-tailed, median six days, 1 to 45."""
    return np.clip(rng.lognormal(np.log(6.0), 0.6, n), 1.0, 45.0)


def history_delays(seed: int = 99) -> LabelDelays:
    return LabelDelays(delay_days(5000, np.random.default_rng(seed)), horizon_days=45.0)


def world(
    ages: tuple[float, float],
    recall: float,
    *,
    n: int = 20_000,
    fraud_rate: float = 0.02,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Scored transactions aged uniformly in ``ages`` days, a model catching ``recall`` of the
    frauds, and the chargebacks that have arrived by CLOCK. Returns (scored, labels, truth)."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(*ages, n)
    event_ts = CLOCK.timestamp() - age * DAY
    fraud = rng.random(n) < fraud_rate
    caught = fraud & (rng.random(n) < recall)
    false_alarm = ~fraud & (rng.random(n) < 0.004)
    score = np.where(caught | false_alarm, rng.uniform(0.5, 1.0, n), rng.uniform(0.0, 0.5, n))
    score = np.where(fraud & ~caught, rng.uniform(0.2, 0.5, n), score)
    txn_id = np.arange(n) + 1000
    arrival = event_ts + delay_days(n, rng) * DAY
    arrived = fraud & (arrival <= CLOCK.timestamp())
    labels = pd.DataFrame(
        {
            "txn_id": txn_id[arrived],
            "chargeback_timestamp": pd.to_datetime(arrival[arrived], unit="s", utc=True),
        }
    )
    scored = pd.DataFrame(
        {
            "transaction_id": txn_id.astype(str),
            "event_ts": event_ts,
            "score": score,
            "threshold": THRESHOLD,
            "amount": rng.uniform(5, 500, n).round(2),
            "model_version": "7",
            "fallback": False,
            "merchant_category": rng.choice(["grocery", "digital_goods", "travel"], n),
            "home_region": rng.choice(["EU", "NA"], n),
            "account_age_days": rng.uniform(0, 900, n),
        }
    )
    return scored, labels, fraud.astype(int)


@pytest.fixture(scope="module")
def champion_test() -> dict[str, float]:
    """The healthy model's metrics with every label known: what the champion's test split says."""
    scored, _, truth = world((30, 40), recall=0.93, seed=1)
    return classification_metrics(
        truth, scored["score"].to_numpy(), scored["amount"].to_numpy(), THRESHOLD, 5.0
    )


def judge(scored, labels, champion_test, policy=POLICY):
    return compute_performance(
        scored,
        labels,
        pd.to_numeric(scored["transaction_id"], errors="coerce").dropna().astype(int).unique(),
        history_delays(),
        clock=CLOCK,
        baseline=champion_test,
        policy=policy,
    )


def test_a_healthy_model_on_mostly_labelled_traffic_is_ok(champion_test) -> None:
    result = judge(*world((10, 20), recall=0.93)[:2], champion_test)
    assert result.status == "ok", result.reason
    assert result.judged_positives >= POLICY.min_positives
    assert result.metrics["recall"] == pytest.approx(0.93, abs=0.06)
    assert result.n_judged == result.n_labelable  # every age here is ≥ 60 % complete


def test_a_recall_collapse_on_matured_labels_alerts(champion_test) -> None:
    result = judge(*world((10, 20), recall=0.3)[:2], champion_test)
    assert result.status == "alert", result.reason
    assert result.metrics["recall"] < 0.45
    assert result.drops["recall"] > POLICY.recall_alert_drop
    assert "recall" in result.reason


def test_a_modest_recall_drop_warns(champion_test) -> None:
    result = judge(*world((10, 20), recall=0.78, n=60_000)[:2], champion_test)
    assert result.status == "warn", result.reason


def test_immature_labels_give_no_verdict_not_a_false_alarm(champion_test) -> None:
    """Two days old: a fifth of the chargebacks at most. Even a collapsed model is not judged,
    and the report says how incomplete the labels are."""
    for recall in (0.93, 0.3):
        result = judge(*world((0, 2), recall=recall)[:2], champion_test)
        assert result.status == "insufficient_data", result.reason
        assert result.n_judged == 0
        assert result.window_completeness is not None and result.window_completeness < 0.2
        assert "no verdict" in result.reason


def test_incomplete_labels_lower_pr_auc_but_the_adjusted_value_does_not_alarm(
    champion_test,
) -> None:
    """Seven to nine days old: ~70 % of chargebacks in. The frauds still on their way count as
    false positives, so precision and PR-AUC on the labels so far look much worse than the
    champion's; divided by the expected completeness they do not."""
    result = judge(*world((7.5, 9.0), recall=0.93, n=60_000)[:2], champion_test)
    assert result.judged_completeness is not None and result.judged_completeness < 0.85
    assert champion_test["pr_auc"] - result.metrics["pr_auc"] > POLICY.pr_auc_warn_drop
    assert abs(champion_test["pr_auc"] - result.adjusted["pr_auc"]) < POLICY.pr_auc_warn_drop
    assert result.status == "ok", result.reason


def test_label_age_buckets_show_completeness_rising_with_age(champion_test) -> None:
    scored, labels, _ = world((0, 30), recall=0.93, n=40_000)
    result = judge(scored, labels, champion_test)
    buckets = [b for b in result.label_age if b.n]
    assert buckets[0].bucket == "0-1d"
    assert buckets[-1].bucket.endswith("(matured)")
    completeness = [b.expected_completeness for b in buckets]
    assert completeness == sorted(completeness)
    assert completeness[0] < 0.05 and completeness[-1] > 0.95
    assert result.n_matured == buckets[-1].n
    assert sum(b.n for b in buckets) == result.n_labelable
    assert buckets[0].judged == 0 and buckets[-1].judged == buckets[-1].n


def test_unknown_transaction_ids_and_repeats_are_counted_not_labelled(champion_test) -> None:
    scored, labels, _ = world((10, 20), recall=0.93, n=2000)
    extra = scored.head(3).assign(transaction_id=["it-1", "it-2", None])
    repeat = scored.head(2).assign(score=0.0)  # the same transactions scored again later
    result = judge(pd.concat([scored, extra, repeat], ignore_index=True), labels, champion_test)
    assert result.n_unlabelable == 3
    assert result.unlabelable_examples[:2] == ["it-1", "it-2"]
    assert result.n_duplicates == 2
    assert result.n_labelable == 2000  # first decision of each known transaction


def test_each_decision_is_judged_at_its_own_threshold(champion_test) -> None:
    """A window spanning a model change: frauds scored 0.7 were declined by the version with
    threshold 0.5 and approved by the one with 0.9."""
    n = 400
    scored = pd.DataFrame(
        {
            "transaction_id": [str(i) for i in range(n)],
            "event_ts": CLOCK.timestamp() - 25 * DAY,
            "score": np.where(np.arange(n) % 10 == 0, 0.7, 0.1),
            "threshold": np.where(np.arange(n) < n // 2, 0.5, 0.9),
            "amount": 100.0,
            "model_version": np.where(np.arange(n) < n // 2, "1", "2"),
            "fallback": False,
            "merchant_category": "grocery",
            "home_region": "EU",
            "account_age_days": 400.0,
        }
    )
    frauds = np.arange(0, n, 10)
    labels = pd.DataFrame(
        {
            "txn_id": frauds,
            "chargeback_timestamp": CLOCK - pd.Timedelta(days=20),
        }
    )
    result = judge(scored, labels, champion_test)
    assert result.metrics["recall"] == pytest.approx(0.5)
    by_version = {v.version: v for v in result.versions}
    assert by_version["1"].threshold == 0.5 and by_version["2"].threshold == 0.9
    assert by_version["1"].slices["merchant_category"]["grocery"]["recall"] == 1.0
    assert by_version["2"].slices["merchant_category"]["grocery"]["recall"] == 0.0


def test_without_champion_test_metrics_there_is_no_verdict() -> None:
    scored, labels, _ = world((10, 20), recall=0.3)
    result = judge(scored, labels, None)
    assert result.status == "insufficient_data"
    assert "no test metrics" in result.reason


def test_chargeback_delays_leave_out_transactions_too_young_for_all_their_labels() -> None:
    """Transactions younger than the horizon have only their fast chargebacks so far: counting
    them would make labels look complete sooner than they are."""
    rng = np.random.default_rng(3)
    n = 50_000
    event = CLOCK - pd.to_timedelta(rng.uniform(0, 120, n), unit="D")
    fraud = rng.random(n) < 0.05
    arrival = event + pd.to_timedelta(delay_days(n, rng), unit="D")
    arrived = fraud & (arrival <= CLOCK)
    transactions = pd.DataFrame({"txn_id": np.arange(n), "event_timestamp": event})
    labels = pd.DataFrame(
        {"txn_id": np.arange(n)[arrived], "chargeback_timestamp": arrival[arrived]}
    )
    delays = performance.chargeback_delays(transactions, labels, CLOCK, horizon_days=45)
    assert delays.horizon_days == 45
    assert delays.delay_days.max() <= 45
    expected_at_7 = 0.5 * (1 + math.erf(math.log(7 / 6) / (0.6 * math.sqrt(2))))
    assert float(delays.completeness(7.0, 21)) == pytest.approx(expected_at_7, abs=0.03)
    everything = labels.merge(transactions, on="txn_id")
    naive = (everything["chargeback_timestamp"] - everything["event_timestamp"]).dt.days
    assert (naive <= 7).mean() > float(delays.completeness(7.0, 21)) + 0.03  # the bias avoided


def test_without_label_history_only_matured_transactions_count() -> None:
    none = LabelDelays(np.array([]), 45.0)
    assert list(none.completeness(np.array([3.0, 20.9, 21.0, 40.0]), 21)) == [0, 0, 1, 1]
    assert none.age_for(0.6, 21) == 21


def test_the_summary_is_valid_json_with_nan_as_null(champion_test) -> None:
    result = judge(*world((0, 2), recall=0.93, n=500)[:2], champion_test)
    text = json.dumps(result.to_dict(), allow_nan=False)
    assert json.loads(text)["status"] == "insufficient_data"
    assert "<table>" in performance.render_html(result)


def test_scored_frame_reads_what_serving_logged() -> None:
    record = prediction_record(
        transaction_id="600259",
        event_ts=1775046452.0,
        request={"amount": 39.02},
        features={"merchant_category": "restaurants", "home_region": "EU"},
        model_inputs={"account_age_days": 879.1},
        score=8.4e-05,
        threshold=0.0232,
        model_version="1",
    )
    frame = performance.scored_frame([record])
    row = frame.iloc[0]
    assert row["transaction_id"] == "600259" and row["amount"] == 39.02
    assert row["merchant_category"] == "restaurants" and row["home_region"] == "EU"
    assert row["account_age_days"] == 879.1 and row["threshold"] == 0.0232
