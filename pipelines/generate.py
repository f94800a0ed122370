"""Seeded synthetic card-not-present transactions with realistic fraud patterns.

Owns: the raw world of fraudlab — users, merchants, devices, transactions and the chargeback
labels that arrive days after a fraudulent transaction. Everything is vectorised with numpy, so
a million transactions take seconds, and the same seed always gives identical data.

Must not: compute model features (that is ``pipelines.feature_tables`` and the Feast repo) or
know anything about models.

Fraud patterns (each leaves a trace a good model can learn, none is a perfect tell):
- account takeover (``ato``): a fraudster's device, often from another region, a burst of
  high-value purchases in risky categories, more often at night;
- card testing (``card_testing``): a rapid burst of tiny amounts at one digital merchant;
- compromised merchants (``risky_merchant``): a few merchants leak card data, and ordinary-looking
  purchases there turn out to be fraud.
Legitimate customers also buy on new phones, travel, and buy gift cards, so no single feature
separates the classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.vocabulary import CHANNELS, MERCHANT_CATEGORIES, REGIONS
from foundation.settings import Settings

REGION_WEIGHTS = np.array([0.34, 0.30, 0.20, 0.10, 0.06])

# share of legitimate purchases, and log-normal amount parameters, per category (in the order
# of features.vocabulary.MERCHANT_CATEGORIES)
CATEGORY_WEIGHTS = np.array([0.24, 0.12, 0.20, 0.10, 0.06, 0.05, 0.06, 0.10, 0.04, 0.03])
CATEGORY_LOG_MEAN = np.log([45, 50, 30, 70, 90, 420, 260, 15, 60, 40])
CATEGORY_LOG_SIGMA = np.array([0.6, 0.4, 0.6, 0.7, 0.5, 0.8, 0.8, 0.9, 0.6, 1.0])
SECONDS_PER_DAY = 86_400
FRAUD_DEVICE_BASE = 1_000_000_000  # fraudsters' devices live in their own id range

# Bump when the same seed would generate different data: existing homes then regenerate.
GENERATOR_VERSION = 3

PATTERN_SHARE = {"ato": 0.40, "card_testing": 0.35, "risky_merchant": 0.25}


@dataclass(frozen=True)
class WorldConfig:
    """Parameters of one synthetic world. Their defaults live in ``foundation.settings``
    only: build one with ``from_settings`` (a stack's world) or ``with_defaults`` (a test's)."""

    seed: int
    n_users: int
    n_merchants: int
    history_days: int
    future_days: int
    fraud_rate: float
    txns_per_user_day: float
    start_date: str

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> WorldConfig:
        """The world ``settings`` describe, with ``overrides`` on top."""
        values = {name: getattr(settings, name) for name in cls.__dataclass_fields__}
        return cls(**{**values, **overrides})

    @classmethod
    def with_defaults(cls, **overrides: object) -> WorldConfig:
        """The settings' default world (whatever the environment says), ``overrides`` on top."""
        values = {name: Settings.model_fields[name].default for name in cls.__dataclass_fields__}
        return cls(**{**values, **overrides})

    @property
    def start(self) -> pd.Timestamp:
        return pd.Timestamp(self.start_date, tz="UTC")

    @property
    def now(self) -> pd.Timestamp:
        """The stack's present: end of history, start of the replayed future."""
        return self.start + pd.Timedelta(days=self.history_days)

    @property
    def end(self) -> pd.Timestamp:
        return self.now + pd.Timedelta(days=self.future_days)


@dataclass(frozen=True)
class World:
    users: pd.DataFrame
    merchants: pd.DataFrame
    transactions: pd.DataFrame


def generate(config: WorldConfig) -> World:
    """Generate users, merchants and transactions (history and future) for ``config``."""
    rng = np.random.default_rng(config.seed)
    users = _users(config, rng)
    merchants = _merchants(config, rng)
    legit = _legit_transactions(config, rng, users, merchants)
    n_fraud_target = round(config.fraud_rate * len(legit) / (1 - config.fraud_rate))
    fraud = _fraud_transactions(config, rng, users, merchants, n_fraud_target)
    txns = _one_per_user_and_second(pd.concat([legit, fraud], ignore_index=True))
    txns = txns[(txns["event_timestamp"] >= config.start) & (txns["event_timestamp"] < config.end)]
    txns = txns.sort_values(["event_timestamp", "user_id"], kind="stable").reset_index(drop=True)
    txns.insert(0, "txn_id", np.arange(1, len(txns) + 1, dtype=np.int64))
    txns["chargeback_timestamp"] = _chargebacks(rng, txns)
    return World(users=users, merchants=merchants, transactions=txns)


def _one_per_user_and_second(txns: pd.DataFrame) -> pd.DataFrame:
    """Move a customer's second purchase within the same second to the next free second.

    Timestamps have one-second resolution; two purchases of one customer in the same second
    would have no order, so neither the velocity state nor a point-in-time join could say which
    came first (Feast would pick either at random).
    """
    while True:
        clash = txns.duplicated(["user_id", "event_timestamp"], keep="first").to_numpy()
        if not clash.any():
            return txns
        txns.loc[clash, "event_timestamp"] += pd.Timedelta(seconds=1)


def _users(config: WorldConfig, rng: np.random.Generator) -> pd.DataFrame:
    n = config.n_users
    # most accounts are old; about one in ten opened during the simulated period
    age_days = rng.uniform(30, 1500, n)
    recent = rng.random(n) < 0.10
    total_days = config.history_days + config.future_days
    age_days[recent] = -rng.uniform(0, total_days, recent.sum())
    signup = config.start - pd.to_timedelta(age_days * SECONDS_PER_DAY, unit="s")
    return pd.DataFrame(
        {
            "user_id": np.arange(1, n + 1, dtype=np.int64),
            "signup_timestamp": signup.round("s"),
            "home_region": np.array(REGIONS)[rng.choice(len(REGIONS), n, p=REGION_WEIGHTS)],
            # hidden: how active the customer is, and how many devices they own
            "activity": rng.gamma(2.0, config.txns_per_user_day / 2.0, n),
            "n_devices": 1 + rng.binomial(2, 0.3, n),
        }
    )


def _merchants(config: WorldConfig, rng: np.random.Generator) -> pd.DataFrame:
    n = config.n_merchants
    category = rng.choice(len(MERCHANT_CATEGORIES), n, p=CATEGORY_WEIGHTS)
    # every category needs merchants, however small the world
    category[: len(MERCHANT_CATEGORIES)] = np.arange(len(MERCHANT_CATEGORIES))
    compromised = rng.random(n) < 0.03
    return pd.DataFrame(
        {
            "merchant_id": np.arange(1, n + 1, dtype=np.int64),
            "merchant_category": np.array(MERCHANT_CATEGORIES)[category],
            "merchant_region": np.array(REGIONS)[rng.choice(len(REGIONS), n, p=REGION_WEIGHTS)],
            "popularity": rng.pareto(1.5, n) + 1.0,
            "compromised": compromised,
        }
    )


def _pick_merchants(
    rng: np.random.Generator, merchants: pd.DataFrame, categories: np.ndarray
) -> np.ndarray:
    """One merchant per requested category, popular merchants more often."""
    out = np.empty(len(categories), dtype=np.int64)
    cat_of = merchants["merchant_category"].to_numpy()
    for name in np.unique(categories):
        mask = categories == name
        pool = np.flatnonzero(cat_of == name)
        weights = merchants["popularity"].to_numpy()[pool]
        out[mask] = merchants["merchant_id"].to_numpy()[
            pool[rng.choice(len(pool), mask.sum(), p=weights / weights.sum())]
        ]
    return out


def _hours(rng: np.random.Generator, n: int, night_share: float) -> np.ndarray:
    """Second of day: a day-shaped profile, with ``night_share`` of events between 0 and 6 h."""
    day = rng.normal(14.5 * 3600, 3.5 * 3600, n) % SECONDS_PER_DAY
    night = rng.uniform(0, 6 * 3600, n)
    return np.where(rng.random(n) < night_share, night, day)


def _legit_transactions(
    config: WorldConfig, rng: np.random.Generator, users: pd.DataFrame, merchants: pd.DataFrame
) -> pd.DataFrame:
    total_days = config.history_days + config.future_days
    signup_offset = (users["signup_timestamp"] - config.start).dt.total_seconds().to_numpy()
    first_day = np.clip(np.ceil(signup_offset / SECONDS_PER_DAY), 0, total_days)
    active_days = total_days - first_day
    counts = rng.poisson(users["activity"].to_numpy() * active_days)
    idx = np.repeat(np.arange(len(users)), counts)
    n = len(idx)
    day = first_day[idx] + np.floor(rng.random(n) * active_days[idx])
    seconds = day * SECONDS_PER_DAY + _hours(rng, n, night_share=0.04)

    cat_idx = rng.choice(len(CATEGORY_WEIGHTS), n, p=CATEGORY_WEIGHTS)
    category = np.array(MERCHANT_CATEGORIES)[cat_idx]
    amount = np.exp(rng.normal(CATEGORY_LOG_MEAN[cat_idx], CATEGORY_LOG_SIGMA[cat_idx]))

    n_devices = users["n_devices"].to_numpy()[idx]
    # mostly the primary phone, sometimes another own device, rarely a brand-new one
    device_slot = np.where(rng.random(n) < 0.8, 0, rng.integers(0, n_devices))
    new_phone = rng.random(n) < 0.004
    device_slot = np.where(new_phone, n_devices, device_slot)
    user_id = users["user_id"].to_numpy()[idx]
    home = users["home_region"].to_numpy()[idx]
    travelling = rng.random(n) < 0.03
    ip_region = np.where(travelling, np.array(REGIONS)[rng.integers(0, len(REGIONS), n)], home)

    return pd.DataFrame(
        {
            "event_timestamp": config.start + pd.to_timedelta(np.round(seconds), unit="s"),
            "user_id": user_id,
            "merchant_id": _pick_merchants(rng, merchants, category),
            "device_id": user_id * 10 + device_slot,
            "amount": np.round(np.clip(amount, 0.5, 20_000), 2),
            "channel": np.array(CHANNELS)[(rng.random(n) < 0.4).astype(int)],
            "ip_region": ip_region,
            "is_fraud": np.zeros(n, dtype=np.int8),
            "fraud_pattern": np.full(n, "none", dtype=object),
        }
    )


def _bursts(
    rng: np.random.Generator, n_events: int, sizes: np.ndarray, mean_gap_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Expand events into transactions: (event index, seconds after the event's start)."""
    event = np.repeat(np.arange(n_events), sizes)
    gaps = rng.exponential(mean_gap_s, len(event))
    starts = np.repeat(np.cumsum(sizes) - sizes, sizes)
    cum = np.cumsum(gaps)
    offset = cum - cum[starts]  # the first transaction of an event happens at its start
    return event, offset


def _fraud_transactions(
    config: WorldConfig,
    rng: np.random.Generator,
    users: pd.DataFrame,
    merchants: pd.DataFrame,
    n_target: int,
) -> pd.DataFrame:
    total_seconds = (config.history_days + config.future_days) * SECONDS_PER_DAY
    frames = []
    user_ids = users["user_id"].to_numpy()
    home_of = dict(zip(user_ids, users["home_region"].to_numpy()))
    regions = np.array(REGIONS)
    fraud_devices = FRAUD_DEVICE_BASE + np.arange(max(50, n_target // 20))

    # a victim's account must exist before it can be attacked (at least an hour before)
    signup_offset = (users["signup_timestamp"] - config.start).dt.total_seconds().to_numpy()
    by_signup = np.argsort(signup_offset, kind="stable")
    signup_sorted = signup_offset[by_signup]

    def victims(at_seconds: np.ndarray) -> np.ndarray:
        eligible = np.maximum(np.searchsorted(signup_sorted, at_seconds - 3600), 1)
        pick = np.floor(rng.random(len(at_seconds)) * eligible).astype(np.int64)
        return user_ids[by_signup[pick]]

    def other_region(home: np.ndarray, p_other: float) -> np.ndarray:
        shift = rng.integers(1, len(REGIONS), len(home))
        home_idx = np.array([REGIONS.index(r) for r in home])
        moved = regions[(home_idx + shift) % len(REGIONS)]
        return np.where(rng.random(len(home)) < p_other, moved, home)

    # account takeover: bursts of 2+ high-value purchases from a fraudster's device
    n_ato = int(n_target * PATTERN_SHARE["ato"])
    sizes = 2 + rng.poisson(1.5, max(1, n_ato // 3))
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), n_ato) + 1]
    ev, off = _bursts(rng, len(sizes), sizes, mean_gap_s=600)
    start = rng.uniform(0, total_seconds - SECONDS_PER_DAY, len(sizes))
    start = np.floor(start / SECONDS_PER_DAY) * SECONDS_PER_DAY + _hours(rng, len(sizes), 0.45)
    victim = victims(start)[ev]
    home = np.array([home_of[u] for u in victim])
    cats = rng.choice(
        ["electronics", "gift_cards", "travel", "digital_goods", "fashion"],
        len(ev),
        p=[0.35, 0.25, 0.15, 0.15, 0.10],
    )
    frames.append(
        pd.DataFrame(
            {
                "seconds": start[ev] + off,
                "user_id": victim,
                "merchant_id": _pick_merchants(rng, merchants, cats),
                "device_id": rng.choice(fraud_devices, len(sizes))[ev],
                "amount": np.round(np.exp(rng.normal(np.log(450), 0.8, len(ev))), 2),
                "channel": np.where(rng.random(len(ev)) < 0.7, "web", "app"),
                "ip_region": other_region(home, 0.6),
                "fraud_pattern": "ato",
            }
        )
    )

    # card testing: a rapid run of tiny charges at one digital merchant
    n_ct = int(n_target * PATTERN_SHARE["card_testing"])
    sizes = 4 + rng.poisson(5, max(1, n_ct // 8))
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), n_ct) + 1]
    ev, off = _bursts(rng, len(sizes), sizes, mean_gap_s=45)
    start = rng.uniform(0, total_seconds - SECONDS_PER_DAY, len(sizes))
    start = np.floor(start / SECONDS_PER_DAY) * SECONDS_PER_DAY + _hours(rng, len(sizes), 0.35)
    victim = victims(start)[ev]
    home = np.array([home_of[u] for u in victim])
    event_cat = rng.choice(
        ["digital_goods", "gift_cards", "gambling"], len(sizes), p=[0.6, 0.25, 0.15]
    )
    event_merchant = _pick_merchants(rng, merchants, event_cat)
    own_device = victim * 10
    frames.append(
        pd.DataFrame(
            {
                "seconds": start[ev] + off,
                "user_id": victim,
                "merchant_id": event_merchant[ev],
                "device_id": np.where(
                    rng.random(len(sizes)) < 0.6, rng.choice(fraud_devices, len(sizes)), -1
                )[ev],
                "amount": np.round(rng.uniform(0.5, 5.0, len(ev)), 2),
                "channel": "web",
                "ip_region": other_region(home, 0.5),
                "fraud_pattern": "card_testing",
            }
        )
    )
    ct = frames[-1]
    ct.loc[ct["device_id"] < 0, "device_id"] = own_device[ct["device_id"].to_numpy() < 0]

    # compromised merchants: ordinary-looking purchases that later charge back
    n_rm = n_target - sum(len(f) for f in frames)
    if n_rm > 0:
        risky = merchants[merchants["compromised"]]
        if risky.empty:
            risky = merchants.head(1)
        m_idx = rng.integers(0, len(risky), n_rm)
        cat = risky["merchant_category"].to_numpy()[m_idx]
        cat_idx = np.array([MERCHANT_CATEGORIES.index(c) for c in cat])
        seconds = rng.uniform(0, total_seconds, n_rm)
        victim = victims(seconds)
        frames.append(
            pd.DataFrame(
                {
                    "seconds": seconds,
                    "user_id": victim,
                    "merchant_id": risky["merchant_id"].to_numpy()[m_idx],
                    "device_id": victim * 10,
                    "amount": np.round(
                        np.exp(rng.normal(CATEGORY_LOG_MEAN[cat_idx] + 0.5, 0.7)), 2
                    ),
                    "channel": np.where(rng.random(n_rm) < 0.5, "web", "app"),
                    "ip_region": np.array([home_of[u] for u in victim]),
                    "fraud_pattern": "risky_merchant",
                }
            )
        )

    fraud = pd.concat(frames, ignore_index=True)
    fraud["event_timestamp"] = config.start + pd.to_timedelta(
        np.round(fraud.pop("seconds")), unit="s"
    )
    fraud["amount"] = fraud["amount"].clip(0.5, 20_000)
    fraud["is_fraud"] = np.int8(1)
    return fraud[
        [
            "event_timestamp",
            "user_id",
            "merchant_id",
            "device_id",
            "amount",
            "channel",
            "ip_region",
            "is_fraud",
            "fraud_pattern",
        ]
    ]


def _chargebacks(rng: np.random.Generator, txns: pd.DataFrame) -> pd.Series:
    """When each fraud's chargeback reaches us: days later, long-tailed; never for legit ones."""
    delay_days = np.clip(rng.lognormal(np.log(6.0), 0.6, len(txns)), 1.0, 45.0)
    arrival = txns["event_timestamp"] + pd.to_timedelta(
        np.round(delay_days * SECONDS_PER_DAY), unit="s"
    )
    return arrival.where(txns["is_fraud"].to_numpy() == 1)
