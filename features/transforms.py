"""The one transform between retrieved features and the model's input.

Owns: every computation applied after features leave Feast, for training and serving alike —
imputation of missing values, encodings, request-time derived features — and the velocity
state update that both the offline backfill and the serving push use. Training imports it;
serving imports it; nothing else computes a model input. Duplicating any of this elsewhere is
how training-serving skew is born.

Must not: do I/O, import Feast or MLflow, or depend on pandas on the hot path. Functions take
mappings of numpy arrays so that one row (serving) and a million rows (training) run the same
code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from features.vocabulary import CHANNELS, MERCHANT_CATEGORIES, REGIONS

TRANSFORM_VERSION = "fraud-transform-v2"


VELOCITY_TAU_S = 3600.0  # decay time of the velocity counters (one hour)
SMALL_AMOUNT = 5.0  # a purchase below this counts towards the card-testing counter
NO_PREVIOUS_TXN_S = 30 * 86_400.0  # "seconds since last transaction" when there was none
SECONDS_PER_DAY = 86_400.0

# Fields the caller supplies with every request (not looked up in the feature store).
REQUEST_FIELDS: tuple[str, ...] = ("amount", "channel", "ip_region", "event_ts")

# Features read from the feature store, by the name Feast returns them under.
STORED_FEATURES: tuple[str, ...] = (
    "user_txn_count_1d",
    "user_txn_count_7d",
    "user_amount_mean_30d",
    "user_amount_std_30d",
    "user_chargeback_count_90d",
    "signup_ts",
    "home_region",
    "merchant_category",
    "merchant_txn_count_7d",
    "merchant_amount_mean_30d",
    "merchant_chargeback_rate_30d",
    "user_device_txn_count_30d",
    "last_txn_ts",
    "velocity_1h",
    "small_velocity_1h",
)

# The model's input columns, in the order this transform produces them. The order a given
# model was trained with is recorded with the model; serving always follows the model's own.
MODEL_FEATURES: tuple[str, ...] = (
    "amount_log",
    "amount_to_user_mean",
    "amount_to_merchant_mean",
    "user_txn_count_1d",
    "user_txn_count_7d",
    "user_amount_std_30d",
    "user_chargeback_count_90d",
    "account_age_days",
    "geo_mismatch",
    "hour_of_day",
    "is_web",
    "merchant_category_code",
    "merchant_txn_count_7d",
    "merchant_chargeback_rate_30d",
    "user_device_txn_count_30d",
    "is_new_device",
    "secs_since_last_txn",
    "velocity_1h",
    "small_velocity_1h",
)

# Stored features a feature service may offer beyond the ones above, which the transform hands
# to the model exactly as stored (missing: their default). A model uses one only when its
# feature service has it: ``model_features`` puts them after MODEL_FEATURES, in the service's
# order, and a model's recorded feature order says which it was trained on.
PASSTHROUGH_FEATURES: tuple[str, ...] = (
    "user_disputed_txn_count_7d",
    "merchant_disputed_txn_count_7d",
)

# Values used when the feature store has nothing for an entity (a new user, a new device):
# "no history" rather than "average history".
STORED_DEFAULTS: dict[str, float] = {
    "user_txn_count_1d": 0.0,
    "user_txn_count_7d": 0.0,
    "user_amount_mean_30d": 0.0,
    "user_amount_std_30d": 0.0,
    "user_chargeback_count_90d": 0.0,
    "merchant_txn_count_7d": 0.0,
    "merchant_amount_mean_30d": 0.0,
    "merchant_chargeback_rate_30d": 0.0,
    "user_device_txn_count_30d": 0.0,
    "velocity_1h": 0.0,
    "small_velocity_1h": 0.0,
    "user_disputed_txn_count_7d": 0.0,
    "merchant_disputed_txn_count_7d": 0.0,
}


def transform_spec() -> dict:
    """A description of this transform, stored with every model trained through it."""
    return {
        "version": TRANSFORM_VERSION,
        "request_fields": list(REQUEST_FIELDS),
        "stored_features": list(STORED_FEATURES),
        "passthrough_features": list(PASSTHROUGH_FEATURES),
        "model_features": list(MODEL_FEATURES),
        "defaults": STORED_DEFAULTS,
        "encodings": {
            "home_region": list(REGIONS),
            "merchant_category": list(MERCHANT_CATEGORIES),
            "channel": list(CHANNELS),
        },
        "velocity_tau_s": VELOCITY_TAU_S,
        "small_amount": SMALL_AMOUNT,
        "no_previous_txn_s": NO_PREVIOUS_TXN_S,
    }


def model_features(service_features: Iterable[str]) -> list[str]:
    """The input order of a model trained on a feature service with these features.

    Every model gets MODEL_FEATURES; a pass-through feature the service offers follows them,
    in the service's order. Training records the result with the model; serving and the
    monitors follow the model's recorded order, never this function.
    """
    return [*MODEL_FEATURES, *(f for f in service_features if f in PASSTHROUGH_FEATURES)]


def stored_inputs(feature_order: Iterable[str]) -> tuple[str, ...]:
    """The stored features the transform reads for a model with this input order."""
    return (*STORED_FEATURES, *(f for f in feature_order if f in PASSTHROUGH_FEATURES))


def _num(values: object, default: float) -> np.ndarray:
    """Float array with missing values (None/NaN) replaced by ``default``."""
    arr = np.asarray(values, dtype=np.float64) if not _has_none(values) else _none_to_nan(values)
    return np.where(np.isnan(arr), default, arr)


def _has_none(values: object) -> bool:
    return (
        isinstance(values, (list, tuple))
        and any(v is None for v in values)
        or (isinstance(values, np.ndarray) and values.dtype == object)
    )


def _none_to_nan(values: object) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)  # type: ignore[union-attr]


_LOOKUPS: dict[tuple[str, ...], dict[str, int]] = {
    vocab: {v: i for i, v in enumerate(vocab)}
    for vocab in (REGIONS, MERCHANT_CATEGORIES, CHANNELS)
}


def _code(values: object, vocabulary: tuple[str, ...]) -> np.ndarray:
    """Index of each value in ``vocabulary``; -1 for missing or unknown values."""
    lookup = _LOOKUPS[vocabulary]
    return np.array(
        [lookup.get(v, -1) for v in np.asarray(values, dtype=object)], dtype=np.float64
    )


def build_model_inputs(columns: Mapping[str, object]) -> dict[str, np.ndarray]:
    """Turn request fields plus stored features into the model's input columns.

    ``columns`` maps each name in ``REQUEST_FIELDS`` and ``STORED_FEATURES`` to an array-like
    (missing values as None or NaN); ``event_ts`` is the transaction time in epoch seconds.
    A ``PASSTHROUGH_FEATURES`` name present in ``columns`` becomes an input of the same name.
    """
    n = len(np.atleast_1d(np.asarray(columns["amount"], dtype=object)))
    stored = {
        name: _num(columns.get(name, [None] * n), STORED_DEFAULTS.get(name, np.nan))
        for name in STORED_FEATURES
        if name not in ("home_region", "merchant_category")
    }
    amount = _num(columns["amount"], np.nan)
    event_ts = _num(columns["event_ts"], np.nan)

    since_last = event_ts - stored["last_txn_ts"]
    known_last = ~np.isnan(since_last)
    since_last = np.where(
        known_last, np.clip(since_last, 0.0, NO_PREVIOUS_TXN_S), NO_PREVIOUS_TXN_S
    )
    decay = np.where(known_last, np.exp(-since_last / VELOCITY_TAU_S), 0.0)

    account_age = (event_ts - stored["signup_ts"]) / SECONDS_PER_DAY
    home = np.asarray(columns.get("home_region", [None] * n), dtype=object)
    ip_region = np.asarray(columns["ip_region"], dtype=object)

    inputs = {
        "amount_log": np.log1p(amount),
        "amount_to_user_mean": amount / (stored["user_amount_mean_30d"] + 10.0),
        "amount_to_merchant_mean": amount / (stored["merchant_amount_mean_30d"] + 10.0),
        "user_txn_count_1d": stored["user_txn_count_1d"],
        "user_txn_count_7d": stored["user_txn_count_7d"],
        "user_amount_std_30d": stored["user_amount_std_30d"],
        "user_chargeback_count_90d": stored["user_chargeback_count_90d"],
        "account_age_days": np.where(np.isnan(account_age), -1.0, account_age),
        "geo_mismatch": np.array(
            [isinstance(h, str) and h != r for h, r in zip(home, ip_region)], dtype=np.float64
        ),
        "hour_of_day": np.mod(event_ts, SECONDS_PER_DAY) / 3600.0,
        "is_web": (_code(columns["channel"], CHANNELS) == 1).astype(np.float64),
        "merchant_category_code": _code(
            columns.get("merchant_category", [None] * n), MERCHANT_CATEGORIES
        ),
        "merchant_txn_count_7d": stored["merchant_txn_count_7d"],
        "merchant_chargeback_rate_30d": stored["merchant_chargeback_rate_30d"],
        "user_device_txn_count_30d": stored["user_device_txn_count_30d"],
        "is_new_device": (stored["user_device_txn_count_30d"] <= 0).astype(np.float64),
        "secs_since_last_txn": since_last,
        "velocity_1h": stored["velocity_1h"] * decay,
        "small_velocity_1h": stored["small_velocity_1h"] * decay,
    }
    for name in PASSTHROUGH_FEATURES:
        if name in columns:
            inputs[name] = _num(columns[name], STORED_DEFAULTS[name])
    return inputs


def to_matrix(
    inputs: Mapping[str, np.ndarray], feature_order: list[str] | tuple[str, ...]
) -> np.ndarray:
    """Stack model inputs into a float32 matrix in the model's own feature order."""
    missing = [name for name in feature_order if name not in inputs]
    if missing:
        raise KeyError(f"model expects features this transform does not produce: {missing}")
    return np.column_stack([np.asarray(inputs[name], dtype=np.float32) for name in feature_order])


# A velocity state becomes visible one millisecond after the transaction that produced it, so a
# point-in-time join for that transaction sees the state before it. The offline backfill and
# serving's push both stamp states through ``velocity_available_at``.
VELOCITY_AVAILABLE_AFTER_MS = 1


def velocity_available_at(event_timestamp):  # pandas timestamps in, pandas timestamps out
    """When the velocity state written by transactions at ``event_timestamp`` becomes visible."""
    import pandas as pd

    return event_timestamp + pd.Timedelta(milliseconds=VELOCITY_AVAILABLE_AFTER_MS)


def velocity_update(
    last_txn_ts: object,
    velocity_1h: object,
    small_velocity_1h: object,
    event_ts: object,
    amount: object,
) -> dict[str, np.ndarray]:
    """Velocity state after a transaction, from the state before it.

    Used by the offline backfill (arrays of users) and by serving's push after each scored
    transaction (one user), so both sides agree to the last bit.
    """
    last = _num(last_txn_ts, np.nan)
    ts = _num(event_ts, np.nan)
    amount_arr = _num(amount, 0.0)
    dt = ts - last
    decay = np.where(np.isnan(dt), 0.0, np.exp(-np.clip(dt, 0.0, None) / VELOCITY_TAU_S))
    return {
        "last_txn_ts": ts,
        "velocity_1h": _num(velocity_1h, 0.0) * decay + 1.0,
        "small_velocity_1h": _num(small_velocity_1h, 0.0) * decay
        + (amount_arr < SMALL_AMOUNT).astype(np.float64),
    }
