"""The synthetic world: deterministic, at the configured base rate, with the fraud patterns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.data import frame_hash
from pipelines.generate import FRAUD_DEVICE_BASE, WorldConfig, generate

SMALL = WorldConfig.with_defaults(
    seed=11, n_users=4000, n_merchants=400, history_days=30, future_days=5
)


@pytest.fixture(scope="module")
def world():
    return generate(SMALL)


def test_same_seed_gives_identical_data(world) -> None:
    again = generate(SMALL)
    assert frame_hash(again.transactions) == frame_hash(world.transactions)
    assert frame_hash(again.users) == frame_hash(world.users)


def test_another_seed_gives_other_data(world) -> None:
    other = generate(WorldConfig(**{**SMALL.__dict__, "seed": 12}))
    assert frame_hash(other.transactions) != frame_hash(world.transactions)


@pytest.mark.parametrize("rate", [1 / 200, 1 / 1000])
def test_fraud_rate_follows_configuration(rate: float) -> None:
    txns = generate(WorldConfig(**{**SMALL.__dict__, "fraud_rate": rate})).transactions
    assert txns["is_fraud"].mean() == pytest.approx(rate, rel=0.25)


def test_transactions_are_ordered_and_inside_the_period(world) -> None:
    ts = world.transactions["event_timestamp"]
    assert ts.is_monotonic_increasing
    assert ts.min() >= SMALL.start and ts.max() < SMALL.end
    assert world.transactions["txn_id"].is_unique


def test_no_transaction_precedes_its_account(world) -> None:
    """Fraud hits existing accounts only: a takeover needs an account to take over."""
    signup = world.users.set_index("user_id")["signup_timestamp"]
    txns = world.transactions
    assert (txns["event_timestamp"].to_numpy() > signup.loc[txns["user_id"]].to_numpy()).all()


def test_a_customer_never_makes_two_purchases_in_the_same_second(world) -> None:
    """Otherwise the order of the two, and so the velocity state, would be undefined."""
    assert not world.transactions.duplicated(["user_id", "event_timestamp"]).any()


def test_chargebacks_arrive_days_later_and_only_for_fraud(world) -> None:
    txns = world.transactions
    has_cb = txns["chargeback_timestamp"].notna()
    assert (has_cb == (txns["is_fraud"] == 1)).all()
    delay = txns.loc[has_cb, "chargeback_timestamp"] - txns.loc[has_cb, "event_timestamp"]
    assert delay.min() >= pd.Timedelta(days=1)
    assert delay.median() > pd.Timedelta(days=3)


def test_account_takeover_uses_fraud_devices_and_high_amounts(world) -> None:
    txns = world.transactions
    ato = txns[txns["fraud_pattern"] == "ato"]
    legit = txns[txns["is_fraud"] == 0]
    assert len(ato) > 20
    assert (ato["device_id"] >= FRAUD_DEVICE_BASE).all()
    assert ato["amount"].median() > 3 * legit["amount"].median()
    # more often abroad and at night than legitimate customers
    users = world.users.set_index("user_id")["home_region"]
    abroad = (ato["ip_region"].to_numpy() != users.loc[ato["user_id"]].to_numpy()).mean()
    legit_abroad = (legit["ip_region"].to_numpy() != users.loc[legit["user_id"]].to_numpy()).mean()
    assert abroad > 5 * legit_abroad
    night = lambda f: (f["event_timestamp"].dt.hour < 6).mean()
    assert night(ato) > 3 * night(legit)


def test_card_testing_is_a_rapid_burst_of_tiny_amounts(world) -> None:
    ct = world.transactions[world.transactions["fraud_pattern"] == "card_testing"]
    assert len(ct) > 20
    assert (ct["amount"] <= 5.0).all()
    gaps = ct.sort_values("event_timestamp").groupby("user_id")["event_timestamp"].diff().dropna()
    assert gaps.median() < pd.Timedelta(minutes=5)


def test_compromised_merchants_carry_fraud(world) -> None:
    txns = world.transactions.merge(world.merchants[["merchant_id", "compromised"]])
    rate = txns.groupby("compromised")["is_fraud"].mean()
    assert rate[True] > 10 * rate[False]


def test_no_single_raw_field_separates_the_classes(world) -> None:
    """Legit customers buy on new phones, travel and buy small amounts too."""
    txns = world.transactions
    legit = txns[txns["is_fraud"] == 0]
    assert (legit["amount"] <= 5.0).sum() > 0
    assert (legit["device_id"] % 10 > 0).sum() > 0  # not only the primary device
    assert np.isin(legit["ip_region"].unique(), txns["ip_region"].unique()).all()


def test_volume_scales_with_users_and_days() -> None:
    """Generation speed is reported by `make bench`; here only the volume is checked."""
    cfg = WorldConfig.with_defaults(seed=1, n_users=2000, history_days=10, future_days=0)
    n = len(generate(cfg).transactions)
    expected = cfg.n_users * cfg.txns_per_user_day * cfg.history_days
    assert 0.7 * expected < n < 1.3 * expected
