"""Decisions: a healthy day reads ok; a champion declining 12× (or a twelfth of) what its test
split declined alerts; fallbacks warn then alert; a window too short or scored by another model
gets no decline verdict; once labels matured, a doubled fraud rate and a threshold that declines
nothing alert; each at the shipped default settings."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from foundation.settings import Settings
from model import decision
from model.record import PredictionRecord
from monitoring import decisions
from monitoring.decisions import DecisionBaseline, DecisionsPolicy, compute_decisions
from tests.conftest import prediction_record

CLOCK = pd.Timestamp("2026-04-15T00:00:00Z")
DAY = 86_400.0
FRICTION = 5.0
FRAUD_RATE = 0.01
POLICY = DecisionsPolicy.from_settings(Settings(_env_file=None))  # the shipped defaults
SINCE = CLOCK.timestamp() - 30 * DAY


def population(n: int, seed: int, fraud_rate: float = FRAUD_RATE):
    """Labels, calibrated-looking scores and amounts of ``n`` transactions."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < fraud_rate
    score = np.where(y, rng.beta(3, 2, n), rng.beta(0.6, 40, n))
    amount = rng.lognormal(4.0, 1.0, n).round(2)
    return y, score, amount


@pytest.fixture(scope="module")
def champion() -> tuple[float, DecisionBaseline]:
    """A threshold chosen on one sample (validation), the decline rate on another (test)."""
    y, score, amount = population(20_000, seed=1)
    threshold = decision.choose_threshold(y, score, amount, FRICTION)
    _, test_score, _ = population(20_000, seed=2)
    rate = float(decision.decline(test_score, threshold).mean())
    return threshold, DecisionBaseline(decline_rate=rate, fraud_rate=FRAUD_RATE)


def records(
    n: int,
    threshold: float,
    *,
    start: float,
    hours: float,
    seed: int,
    version: str = "7",
    fraud_rate: float = FRAUD_RATE,
    fallback_share: float = 0.0,
    release: str | None = None,
    id_offset: int = 0,
) -> tuple[list[PredictionRecord], set[int]]:
    """``n`` decisions spread over ``hours`` from ``start`` (epoch s); and the fraud ids."""
    y, score, amount = population(n, seed, fraud_rate)
    event_ts = start + np.sort(np.random.default_rng(seed + 100).uniform(0, hours * 3600, n))
    fallback = np.arange(n) < round(n * fallback_share)
    out = [
        prediction_record(
            transaction_id=str(id_offset + i),
            event_ts=float(event_ts[i]),
            request={"amount": float(amount[i])},
            score=float(score[i]),
            decision=decision.decide(float(score[i]), threshold),
            threshold=threshold,
            model_version=version,
            fallback=bool(fallback[i]),
            release=release,
        )
        for i in range(n)
    ]
    return out, {id_offset + i for i in np.flatnonzero(y)}


def judge(recs, fraud_ids=(), baseline=None, policy=POLICY, champion_version="7"):
    frame = decisions.decisions_frame(sorted(recs, key=lambda r: r.event_ts))
    return compute_decisions(
        frame,
        fraud_ids,
        None,
        champion=champion_version,
        baseline=baseline,
        clock=CLOCK,
        since=SINCE,
        policy=policy,
    )


def live_day(threshold: float, seed: int = 3, **kwargs):
    return records(3000, threshold, start=CLOCK.timestamp() - DAY, hours=24, seed=seed, **kwargs)


def matured(threshold: float, seed: int = 4, **kwargs):
    """Nine days of decisions old enough for their labels to be final (21 to 30 days)."""
    start = CLOCK.timestamp() - 30 * DAY + 3600
    kwargs.setdefault("id_offset", 1_000_000)
    return records(9000, threshold, start=start, hours=9 * 24 - 2, seed=seed, **kwargs)


def test_a_healthy_window_reads_ok(champion) -> None:
    threshold, baseline = champion
    live, _ = live_day(threshold, fallback_share=0.002)
    old, frauds = matured(threshold)
    result = judge(live + old, frauds, baseline)
    assert result.verdicts == {
        "fallback_rate": "ok",
        "decline_rate": "ok",
        "fraud_rate": "ok",
        "threshold_cost": "ok",
    }, result.reason
    assert result.status == "ok"
    assert 0.6 < result.checks["decline_rate"].ratio < 1.6
    assert result.savings_share > 0.8
    assert result.cost_optimal <= result.cost_live  # hindsight is always at least as good


def declining(baseline: DecisionBaseline, factor: float) -> float:
    """A threshold that declines ``factor`` times the champion's test decline rate."""
    _, score, _ = population(20_000, seed=5)
    return float(np.quantile(score, 1 - baseline.decline_rate * factor))


def test_a_champion_declining_twelve_times_its_test_rate_alerts(champion) -> None:
    _, baseline = champion
    live, _ = live_day(declining(baseline, 12))
    result = judge(live, (), baseline)
    assert result.checks["decline_rate"].status == "alert"
    assert result.checks["decline_rate"].ratio == pytest.approx(12, rel=0.25)
    assert result.status == "alert"
    assert "declines in 3000 decisions" in result.checks["decline_rate"].detail


def test_a_collapse_in_declines_alerts_too(champion) -> None:
    _, baseline = champion
    result = judge(live_day(declining(baseline, 1 / 12))[0], (), baseline)
    assert result.checks["decline_rate"].status == "alert"


def test_twice_the_declines_warns(champion) -> None:
    _, baseline = champion
    assert (
        judge(live_day(declining(baseline, 2.4))[0], (), baseline).checks["decline_rate"].status
        == "warn"
    )


@pytest.mark.parametrize(("share", "status"), [(0.02, "warn"), (0.08, "alert")])
def test_fallbacks_warn_then_alert(champion, share: float, status: str) -> None:
    threshold, baseline = champion
    result = judge(live_day(threshold, fallback_share=share)[0], (), baseline)
    assert result.checks["fallback_rate"].status == status
    assert result.fallback_rate == pytest.approx(share, abs=1e-3)


def test_a_window_shorter_than_a_day_gets_no_decline_verdict(champion) -> None:
    _, baseline = champion
    lax = declining(baseline, 12)
    half_day, _ = records(2000, lax, start=CLOCK.timestamp() - DAY / 2, hours=12, seed=6)
    result = judge(half_day, (), baseline)
    assert result.checks["decline_rate"].status == "insufficient_data"
    assert "daily cycle" in result.checks["decline_rate"].detail
    assert result.status == "ok"  # the fallback rate was judged: none


def test_only_the_champions_own_decisions_are_judged(champion) -> None:
    """Right after a promotion the window holds the previous champion's decisions."""
    threshold, baseline = champion
    previous, _ = live_day(declining(baseline, 12), version="6", id_offset=50_000)
    current, _ = live_day(threshold, seed=8)
    result = judge(previous + current, (), baseline)
    assert result.checks["decline_rate"].status == "ok"
    assert result.n_champion == 3000 and result.n_window == 6000
    assert result.decline_rate_by_version["6"] > 8 * result.decline_rate_by_version["7"]


def test_an_earlier_serving_release_is_left_out_of_the_window(champion) -> None:
    threshold, baseline = champion
    lax = declining(baseline, 12)
    broken, _ = records(
        3000, lax, start=CLOCK.timestamp() - 2 * DAY, hours=36, seed=9, release="r1"
    )
    fixed, _ = records(
        3000,
        threshold,
        start=CLOCK.timestamp() - DAY / 2,
        hours=12,
        seed=10,
        release="r2",
        id_offset=70_000,
    )
    result = judge(broken + fixed, (), baseline)
    assert result.releases_left_out > 0
    assert result.decline_rate == pytest.approx(
        np.mean([r.decision == "decline" for r in fixed]), abs=1e-9
    )
    whole = judge(
        broken + fixed,
        (),
        baseline,
        replace(POLICY, current_release_only=False),
    )
    assert whole.checks["decline_rate"].status == "alert"


def test_a_doubled_fraud_rate_alerts_once_labels_matured(champion) -> None:
    threshold, baseline = champion
    old, frauds = matured(threshold, fraud_rate=2.2 * FRAUD_RATE)
    result = judge(old, frauds, baseline)
    assert result.checks["fraud_rate"].status == "alert"
    assert result.checks["fraud_rate"].ratio == pytest.approx(2.2, rel=0.2)


def test_few_matured_chargebacks_get_no_verdict(champion) -> None:
    threshold, baseline = champion
    old, frauds = matured(threshold)
    result = judge(old, set(sorted(frauds)[:10]), baseline)
    assert result.checks["fraud_rate"].status == "insufficient_data"
    assert result.checks["threshold_cost"].status == "insufficient_data"


def test_a_threshold_that_declines_nothing_loses_the_savings_and_alerts(champion) -> None:
    _, baseline = champion
    old, frauds = matured(1.01)
    result = judge(old, frauds, baseline)
    cost = result.checks["threshold_cost"]
    assert cost.status == "alert"
    assert result.savings_share == pytest.approx(0.0)
    assert result.cost_live == pytest.approx(result.cost_decline_nothing)


def test_young_decisions_are_not_labelled(champion) -> None:
    """Decisions younger than the maturity age never count in the fraud rate (their
    chargebacks may be on their way)."""
    threshold, baseline = champion
    live, frauds = live_day(threshold)
    result = judge(live, frauds, baseline)
    assert result.n_matured == 0


def test_the_baseline_comes_from_the_bundle_and_older_bundles_still_have_one(tmp_path) -> None:
    report = {
        "metrics": {
            "train": {"n": 800.0, "positives": 8.0, "decline_rate": 0.03},
            "test": {"n": 200.0, "positives": 4.0, "decline_rate": 0.02},
        }
    }
    (tmp_path / "evaluation.json").write_text(json.dumps(report))
    older = decisions.champion_baseline(tmp_path)
    assert older == DecisionBaseline(decline_rate=0.02, fraud_rate=0.012)
    report["baseline"] = {"decline_rate": 0.025, "fraud_rate": 0.011}
    (tmp_path / "evaluation.json").write_text(json.dumps(report))
    assert decisions.champion_baseline(tmp_path) == DecisionBaseline(0.025, 0.011)
    assert decisions.champion_baseline(tmp_path / "missing") is None


def test_the_window_is_read_from_the_log_with_fallbacks_and_back_to_the_matured_part(
    tmp_path, champion
) -> None:
    threshold, _ = champion
    settings = Settings(_env_file=None, home=tmp_path)
    settings.prediction_log_dir.mkdir(parents=True)
    ancient, _ = records(50, threshold, start=CLOCK.timestamp() - 60 * DAY, hours=2, seed=11)
    old, _ = matured(threshold, seed=12)
    live, _ = live_day(threshold, fallback_share=0.01, id_offset=90_000)
    synthetic = [prediction_record(event_ts=CLOCK.timestamp() - 60, synthetic=True)]
    lines = [json.dumps(r.to_json()) for r in [*ancient, *old[:500], *live, *synthetic]]
    (settings.prediction_log_dir / "predictions-20260415.jsonl").write_text("\n".join(lines))
    frame = decisions.read_decisions(settings, SINCE)
    assert len(frame) == 500 + 3000  # the ancient ones and the synthetic one left out
    assert frame["fallback"].sum() == 30
    assert frame["event_ts"].is_monotonic_increasing
