"""Feature tables are point-in-time correct: a snapshot only knows what happened before it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines import feature_tables
from pipelines.generate import WorldConfig, generate

CFG = WorldConfig.with_defaults(
    seed=5, n_users=1500, n_merchants=200, history_days=40, future_days=0
)


@pytest.fixture(scope="module")
def world():
    return generate(CFG)


@pytest.fixture(scope="module")
def user_stats(world):
    return feature_tables.user_stats(world.transactions, CFG.start, CFG.history_days)


def test_user_snapshot_counts_only_earlier_transactions(world, user_stats) -> None:
    txns = world.transactions
    rng = np.random.default_rng(0)
    for _, row in user_stats.iloc[rng.integers(0, len(user_stats), 40)].iterrows():
        snap = row["event_timestamp"]
        mine = txns[txns["user_id"] == row["user_id"]]
        week = mine[
            (mine["event_timestamp"] < snap)
            & (mine["event_timestamp"] >= snap - pd.Timedelta(days=7))
        ]
        month = mine[
            (mine["event_timestamp"] < snap)
            & (mine["event_timestamp"] >= snap - pd.Timedelta(days=30))
        ]
        assert row["user_txn_count_7d"] == len(week)
        assert row["user_amount_mean_30d"] == pytest.approx(
            month["amount"].mean() if len(month) else 0.0
        )
        cbs = mine[
            (mine["chargeback_timestamp"] < snap)
            & (mine["chargeback_timestamp"] >= snap - pd.Timedelta(days=90))
        ]
        assert row["user_chargeback_count_90d"] == len(cbs)


def test_latest_row_of_an_inactive_user_reads_zero(world, user_stats) -> None:
    """So 'latest value' means the same online (materialised) and offline (point in time)."""
    last = user_stats.sort_values("event_timestamp").groupby("user_id").tail(1)
    lapsed = last[last["event_timestamp"] < CFG.start + pd.Timedelta(days=CFG.history_days)]
    assert len(lapsed) > 0
    assert (lapsed["user_txn_count_7d"] == 0).all()


def test_user_device_counts_cover_the_30_days_before_the_day(world) -> None:
    n_days = CFG.history_days + CFG.future_days
    table = feature_tables.user_device_stats(world.transactions, CFG.start, n_days)
    txns = world.transactions
    for row in table.sample(50, random_state=1).itertuples():
        used = txns[
            (txns["user_id"] == row.user_id)
            & (txns["device_id"] == row.device_id)
            & (txns["event_timestamp"] < row.event_timestamp)
            & (txns["event_timestamp"] >= row.event_timestamp - pd.Timedelta(days=30))
        ]
        assert row.user_device_txn_count_30d == len(used)
    # a device left unused reads zero once its last use leaves the window (not a stale count)
    last_rows = table.sort_values("event_timestamp").groupby(["user_id", "device_id"]).tail(1)
    lapsed = last_rows[last_rows["event_timestamp"] < CFG.end - pd.Timedelta(days=1)]
    assert len(lapsed) and (lapsed["user_device_txn_count_30d"] == 0).all()


def test_velocity_state_becomes_available_just_after_its_transaction(world) -> None:
    vel = feature_tables.user_velocity(world.transactions)
    assert len(vel) == len(world.transactions)
    assert not vel.duplicated(["user_id", "event_timestamp"]).any()
    user = vel["user_id"].value_counts().index[0]
    mine = vel[vel["user_id"] == user].sort_values("event_timestamp")
    txns = world.transactions[world.transactions["user_id"] == user].sort_values("event_timestamp")
    assert (mine["event_timestamp"].to_numpy() > txns["event_timestamp"].to_numpy()).all()
    assert mine["velocity_1h"].iloc[0] == 1.0
    assert (mine["velocity_1h"] >= 1.0).all()


def test_merchant_chargeback_rate_uses_arrived_chargebacks_only(world) -> None:
    table = feature_tables.merchant_stats(
        world.transactions, world.merchants, CFG.start, CFG.history_days
    )
    first_week = table[table["event_timestamp"] <= CFG.start + pd.Timedelta(days=1)]
    # no chargeback can have arrived within a day of the first transaction
    assert (first_week["merchant_chargeback_rate_30d"] == 0).all()
    assert table["merchant_chargeback_rate_30d"].max() > 0


def test_a_new_world_moves_the_old_prediction_log_out_of_the_monitors_way(tmp_path) -> None:
    from pipelines.data import archive_predictions
    from tests.conftest import small_settings

    settings = small_settings(tmp_path)
    assert archive_predictions(settings) is None  # nothing logged yet
    settings.prediction_log_dir.mkdir(parents=True)
    (settings.prediction_log_dir / "predictions-2026-11-23.jsonl").write_text('{"a": 1}\n')
    target = archive_predictions(settings)
    assert target is not None and (target / "predictions-2026-11-23.jsonl").exists()
    assert not list(settings.prediction_log_dir.glob("predictions-*.jsonl"))
