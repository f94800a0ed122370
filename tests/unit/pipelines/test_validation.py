"""Great Expectations suites: clean data passes, each kind of breakage fails and names its column."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from features.transforms import STORED_FEATURES
from model.record import PredictionRecord
from pipelines import training, validation
from pipelines.data import REQUEST_COLUMNS
from pipelines.generate import WorldConfig, generate
from tests.conftest import prediction_record, small_settings

TINY = WorldConfig.with_defaults(
    n_users=400, n_merchants=60, history_days=45, future_days=2, fraud_rate=1 / 100
)
MAX_AMOUNT = 50_000.0


@pytest.fixture(scope="module")
def transactions() -> pd.DataFrame:
    return generate(TINY).transactions


@pytest.fixture(scope="module")
def training_frame(transactions: pd.DataFrame) -> pd.DataFrame:
    """A training-set-shaped frame: request columns, plausible stored features, label, split."""
    frame = transactions[list(REQUEST_COLUMNS)].copy()
    rng = np.random.default_rng(0)
    n = len(frame)
    for name in STORED_FEATURES:
        frame[name] = rng.uniform(0, 5, n)
    frame["merchant_chargeback_rate_30d"] = rng.uniform(0, 0.05, n)
    frame["home_region"] = frame["ip_region"]
    frame["merchant_category"] = "grocery"
    frame.loc[::500, "signup_ts"] = np.nan  # a brand-new user now and then is normal
    frame["label"] = transactions["is_fraud"].astype(np.int8)
    frame["split"] = training.split_by_time(frame)
    return frame


def transactions_result(frame: pd.DataFrame) -> validation.ValidationResult:
    days = TINY.history_days + TINY.future_days
    bounds = validation.expected_transactions(TINY, days)
    return validation.validate_transactions(frame, MAX_AMOUNT, bounds)


def log_records(n: int = 20) -> list[dict]:
    """Logged records as their JSON lines hold them (a test edits them, then reads them)."""
    return [
        prediction_record(
            request_id=f"r{i}",
            transaction_id=i,
            logged_at="2026-03-01T00:00:00+00:00",
            event_ts=1.77e9 + i,
            user_id=10 + i,
            merchant_id=3,
            device_id=100 + i,
            request={"amount": 12.5, "channel": "web", "ip_region": "EU", "event_ts": 1.77e9},
            features={"user_txn_count_7d": 2.0},
            model_inputs={"amount_log": 2.6},
            score=0.01 * i,
            decision="decline" if i % 7 == 0 else "approve",
            threshold=0.2,
            model_version="3",
            fallback=False,
            fallback_reason=None,
        ).to_json()
        for i in range(n)
    ]


def typed(records: list[dict]) -> list[PredictionRecord]:
    return [PredictionRecord.from_json(r) for r in records]


def only_failure(result: validation.ValidationResult, column: str) -> str:
    assert not result.passed
    hits = [m for m in result.failures if f"column {column} " in m]
    assert hits, f"no failure names {column}: {result.failures}"
    return hits[0]


# --- raw transactions -----------------------------------------------------------------------


def test_clean_generated_transactions_pass(transactions: pd.DataFrame) -> None:
    result = transactions_result(transactions)
    assert result.passed, result.failures
    assert result.n_rows == len(transactions) and result.n_checks > 10


def test_negative_amounts_fail_with_count(transactions: pd.DataFrame) -> None:
    broken = transactions.copy()
    broken.loc[:122, "amount"] = -broken.loc[:122, "amount"]
    message = only_failure(transactions_result(broken), "amount")
    assert "123 values <= 0" in message and "expected > 0" in message
    assert message.startswith("raw transactions:")


def test_unknown_channel_fails(transactions: pd.DataFrame) -> None:
    broken = transactions.copy()
    broken.loc[::10, "channel"] = "crypto_atm"
    message = only_failure(transactions_result(broken), "channel")
    assert "crypto_atm" in message and "app, web" in message


def test_null_user_ids_fail(transactions: pd.DataFrame) -> None:
    broken = transactions.copy()
    broken["user_id"] = broken["user_id"].astype("float64")
    broken.loc[5:9, "user_id"] = np.nan
    message = only_failure(transactions_result(broken), "user_id")
    assert "5 nulls" in message


def test_missing_column_is_reported_once(transactions: pd.DataFrame) -> None:
    result = transactions_result(transactions.drop(columns=["ip_region"]))
    about = [m for m in result.failures if "ip_region" in m]
    assert about == [
        "raw transactions: column ip_region is missing — check the upstream transaction feed"
    ]


def test_volume_far_below_the_configured_world_fails(transactions: pd.DataFrame) -> None:
    result = transactions_result(transactions.iloc[: len(transactions) // 4])
    assert not result.passed
    assert any(m.startswith("raw transactions: table has") for m in result.failures)


# --- training set -------------------------------------------------------------------------


def test_clean_training_set_passes(training_frame: pd.DataFrame) -> None:
    result = validation.validate_training_set(training_frame, MAX_AMOUNT)
    assert result.passed, result.failures


def test_training_set_without_fraud_fails(training_frame: pd.DataFrame) -> None:
    broken = training_frame.assign(label=np.int8(0))
    message = only_failure(validation.validate_training_set(broken, MAX_AMOUNT), "label")
    assert "fraud rate" in message and "chargeback" in message


def test_training_set_with_absurd_fraud_rate_fails(training_frame: pd.DataFrame) -> None:
    broken = training_frame.copy()
    broken.loc[::3, "label"] = 1  # a third of all transactions fraud: a labelling bug
    message = only_failure(validation.validate_training_set(broken, MAX_AMOUNT), "label")
    rate = broken["label"].mean()
    assert f"averages {rate:.2f}" in message or f"averages {rate:.5f}" in message


def test_training_set_feature_breakage_fails(training_frame: pd.DataFrame) -> None:
    broken = training_frame.copy()
    broken.loc[:99, "user_txn_count_7d"] = -1.0
    broken.loc[: len(broken) // 2, "home_region"] = None  # the profile table lost half its rows
    broken["split"] = broken["split"].replace({"test": "valid"})
    result = validation.validate_training_set(broken, MAX_AMOUNT)
    assert "100 values < 0" in only_failure(result, "user_txn_count_7d")
    assert "at most 5% nulls" in only_failure(result, "home_region")
    assert "train, valid and test" in only_failure(result, "split")


# --- logged requests ----------------------------------------------------------------------


def test_clean_logged_requests_pass() -> None:
    result = validation.validate_logged_requests(typed(log_records()), MAX_AMOUNT)
    assert result.passed, result.failures


def test_logged_score_above_one_fails() -> None:
    records = log_records()
    records[4]["score"] = 1.7
    result = validation.validate_logged_requests(typed(records), MAX_AMOUNT)
    message = only_failure(result, "score")
    assert "1 values outside [0, 1]" in message and "1.7" in message


def test_logged_bad_decision_and_missing_version_fail() -> None:
    records = log_records()
    records[0]["decision"] = "review"
    records[1]["model_version"] = None
    records[2]["request"]["channel"] = "fax"
    result = validation.validate_logged_requests(typed(records), MAX_AMOUNT)
    assert "review" in only_failure(result, "decision")
    assert "1 nulls" in only_failure(result, "model_version")
    assert "fax" in only_failure(result, "channel")


# --- the training hook --------------------------------------------------------------------


def write_raw(tmp_path, transactions: pd.DataFrame):
    world = {k: getattr(TINY, k) for k in ("n_users", "n_merchants", "history_days", "fraud_rate")}
    # a short maturity window, so that the tiny world still has a training window
    settings = small_settings(tmp_path, **world, label_maturity_days=1)
    settings.data_dir.mkdir(parents=True)
    transactions.to_parquet(settings.data_dir / "transactions.parquet", index=False)
    (settings.data_dir / "meta.json").write_text(
        json.dumps({"start": TINY.start.isoformat(), "now": TINY.now.isoformat()})
    )
    return settings


def test_hook_passes_clean_data_and_stops_broken(
    tmp_path, transactions: pd.DataFrame, training_frame: pd.DataFrame
) -> None:
    settings = write_raw(tmp_path, transactions)
    start, end = TINY.start, TINY.now
    results = validation.check_before_training(settings, training_frame, start, end)
    assert [r.dataset for r in results] == ["raw transactions", "training set"]

    broken = training_frame.assign(label=np.int8(0))
    with pytest.raises(validation.DataValidationError) as caught:
        validation.check_before_training(settings, broken, start, end)
    assert "column label" in str(caught.value) and "not trained" in str(caught.value)


def test_run_stops_before_fitting(
    tmp_path, monkeypatch, transactions: pd.DataFrame, training_frame: pd.DataFrame
) -> None:
    settings = write_raw(tmp_path, transactions)
    broken = training_frame.copy()
    broken.loc[:9, "amount"] = -1.0
    monkeypatch.setattr(
        training,
        "build_training_set",
        lambda *_: training.TrainingSet(broken, np.zeros((len(broken), 1)), ["f"]),
    )

    def fit_must_not_run(*_args, **_kwargs):
        raise AssertionError("fit ran on data that failed validation")

    monkeypatch.setattr(training, "fit", fit_must_not_run)
    with pytest.raises(validation.DataValidationError, match="column amount has 10 values <= 0"):
        training.run(settings)
