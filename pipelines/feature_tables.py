"""Batch feature computation: the warehouse tables behind the Feast feature views.

Owns: turning raw transactions and the chargeback feed into the time-stamped tables that
Feast's offline store reads (one parquet file per source). Each row is a value *as known at its
event_timestamp*: daily snapshots use only transactions before the snapshot's day start and
chargebacks that had arrived by then, so point-in-time joins never see the future.

Must not: transform features for the model (that is ``features.transforms``), or talk to the
online store (that is materialisation, in ``features.store``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.transforms import velocity_available_at, velocity_update
from foundation.timeutil import epoch_seconds

# Bump when the same raw data would give different tables: existing homes then rebuild them.
FEATURE_TABLES_VERSION = 4

DAY = pd.Timedelta(days=1)


def _day_index(ts: pd.Series, start: pd.Timestamp) -> np.ndarray:
    return ((ts - start) // DAY).to_numpy().astype(np.int64)


def _day_starts(start: pd.Timestamp, day: np.ndarray) -> pd.DatetimeIndex:
    """Timestamps of day starts, vectorised (Timestamp * array goes element by element)."""
    return start + pd.to_timedelta(np.asarray(day, dtype=np.int64), unit="D")


def _window(cum: np.ndarray, days: int) -> np.ndarray:
    """Sum over the ``days`` days before each snapshot, from a cumulative (entity × day) sum."""
    shifted = np.zeros_like(cum)
    shifted[:, days:] = cum[:, :-days] if days < cum.shape[1] else 0
    return cum - shifted


def _dense_daily(
    ids: np.ndarray, days: np.ndarray, values: np.ndarray, n_ids: int, n_days: int
) -> np.ndarray:
    """Cumulative sums at each snapshot k: totals over days strictly before day k."""
    grid = np.zeros((n_ids, n_days + 1))
    ok = (days >= 0) & (days < n_days)
    np.add.at(grid, (ids[ok], days[ok] + 1), values[ok])
    return np.cumsum(grid, axis=1)


def user_stats(txns: pd.DataFrame, start: pd.Timestamp, n_days: int) -> pd.DataFrame:
    """Daily per-user activity aggregates and chargeback counts (snapshot at each day start)."""
    users, uidx = np.unique(txns["user_id"].to_numpy(), return_inverse=True)
    day = _day_index(txns["event_timestamp"], start)
    amount = txns["amount"].to_numpy()
    ones = np.ones(len(txns))
    cnt = _dense_daily(uidx, day, ones, len(users), n_days)
    tot = _dense_daily(uidx, day, amount, len(users), n_days)
    sq = _dense_daily(uidx, day, amount**2, len(users), n_days)
    cb = txns["chargeback_timestamp"].notna().to_numpy()
    cb_day = np.where(cb, _day_index(txns["chargeback_timestamp"].fillna(start), start), -1)
    cbs = _dense_daily(uidx[cb], cb_day[cb], ones[cb], len(users), n_days)

    c30 = _window(cnt, 30)
    mean30 = np.divide(_window(tot, 30), c30, out=np.zeros_like(c30), where=c30 > 0)
    var30 = np.divide(_window(sq, 30), c30, out=np.zeros_like(c30), where=c30 > 0) - mean30**2
    frame = {
        "user_txn_count_1d": _window(cnt, 1),
        "user_txn_count_7d": _window(cnt, 7),
        "user_amount_mean_30d": mean30,
        "user_amount_std_30d": np.sqrt(np.clip(var30, 0, None)),
        "user_chargeback_count_90d": _window(cbs, 90),
    }
    # Emit a row while anything is in (or has just left) a window, so the latest row of an
    # inactive user reads zero — then "latest value" means the same online and offline.
    alive = (_window(cnt, 31) + _window(cbs, 91)) > 0
    alive[:, 0] = False
    rows, snap = np.nonzero(alive)
    out = pd.DataFrame({"user_id": users[rows], "event_timestamp": _day_starts(start, snap)})
    for name, grid in frame.items():
        out[name] = grid[rows, snap].astype(np.float64)
    return out


def merchant_stats(
    txns: pd.DataFrame, merchants: pd.DataFrame, start: pd.Timestamp, n_days: int
) -> pd.DataFrame:
    """Daily per-merchant volume, amount level and chargeback rate (snapshot at day start)."""
    ids = merchants["merchant_id"].to_numpy()
    midx = np.searchsorted(ids, txns["merchant_id"].to_numpy())
    day = _day_index(txns["event_timestamp"], start)
    ones = np.ones(len(txns))
    cnt = _dense_daily(midx, day, ones, len(ids), n_days)
    tot = _dense_daily(midx, day, txns["amount"].to_numpy(), len(ids), n_days)
    cb = txns["chargeback_timestamp"].notna().to_numpy()
    cb_day = np.where(cb, _day_index(txns["chargeback_timestamp"].fillna(start), start), -1)
    cbs = _dense_daily(midx[cb], cb_day[cb], ones[cb], len(ids), n_days)
    c30 = _window(cnt, 30)
    grid_ids, snap = np.meshgrid(np.arange(len(ids)), np.arange(1, n_days + 1), indexing="ij")
    rows, snap = grid_ids.ravel(), snap.ravel()
    out = pd.DataFrame(
        {
            "merchant_id": ids[rows],
            "event_timestamp": _day_starts(start, snap),
            "merchant_category": merchants["merchant_category"].to_numpy()[rows],
            "merchant_txn_count_7d": _window(cnt, 7)[rows, snap],
            "merchant_amount_mean_30d": np.divide(
                _window(tot, 30), c30, out=np.zeros_like(c30), where=c30 > 0
            )[rows, snap],
            "merchant_chargeback_rate_30d": np.divide(
                _window(cbs, 30), c30, out=np.zeros_like(c30), where=c30 > 0
            )[rows, snap],
        }
    )
    return out


def user_device_stats(txns: pd.DataFrame, start: pd.Timestamp, n_days: int) -> pd.DataFrame:
    """How often a user used a device in the 30 days before each day (daily snapshot).

    A window, not a running total: a lifetime count grows with the age of the data, so a model
    trained on early months would see every later month as drifted.
    """
    pairs = pd.MultiIndex.from_arrays([txns["user_id"].to_numpy(), txns["device_id"].to_numpy()])
    pidx, unique_pairs = pd.factorize(pairs, sort=True)
    day = _day_index(txns["event_timestamp"], start)
    cnt = _dense_daily(pidx, day, np.ones(len(txns)), len(unique_pairs), n_days)
    # a row while a use is in (or has just left) the window: the latest row of a device not
    # used for 30 days reads zero, online and offline alike
    alive = _window(cnt, 31) > 0
    alive[:, 0] = False
    rows, snap = np.nonzero(alive)
    return pd.DataFrame(
        {
            "user_id": unique_pairs.get_level_values(0).to_numpy()[rows],
            "device_id": unique_pairs.get_level_values(1).to_numpy()[rows],
            "event_timestamp": _day_starts(start, snap),
            "user_device_txn_count_30d": _window(cnt, 30)[rows, snap].astype(np.float64),
        }
    )


def user_profile(users: pd.DataFrame) -> pd.DataFrame:
    """Static account facts, known from the moment the account is opened."""
    return pd.DataFrame(
        {
            "user_id": users["user_id"].to_numpy(),
            "event_timestamp": users["signup_timestamp"],
            "signup_ts": epoch_seconds(users["signup_timestamp"]),
            "home_region": users["home_region"].to_numpy(),
        }
    )


def user_velocity(txns: pd.DataFrame) -> pd.DataFrame:
    """Velocity state after every transaction (what serving pushes online, rebuilt offline).

    Each row becomes available a millisecond after its transaction, so the point-in-time join
    for a transaction sees the state *before* it — exactly what serving reads before it pushes.
    """
    order = np.lexsort((txns["event_timestamp"].to_numpy(), txns["user_id"].to_numpy()))
    user = txns["user_id"].to_numpy()[order]
    ts = epoch_seconds(txns["event_timestamp"])[order]
    amount = txns["amount"].to_numpy()[order]
    first = np.r_[True, user[1:] != user[:-1]]
    starts = np.flatnonzero(first)
    rank = np.arange(len(user)) - np.repeat(starts, np.diff(np.r_[starts, len(user)]))

    last = np.full(len(user), np.nan)
    vel = np.zeros(len(user))
    small = np.zeros(len(user))
    # walk all users forward one transaction at a time: vectorised across users
    by_rank = np.argsort(rank, kind="stable")
    bounds = np.r_[0, np.cumsum(np.bincount(rank))] if len(rank) else np.array([0])
    for r in range(len(bounds) - 1):
        at = by_rank[bounds[r] : bounds[r + 1]]
        prev = at - 1
        state = velocity_update(
            last[prev] if r > 0 else np.full(len(at), np.nan),
            vel[prev] if r > 0 else np.zeros(len(at)),
            small[prev] if r > 0 else np.zeros(len(at)),
            ts[at],
            amount[at],
        )
        last[at], vel[at], small[at] = (
            state["last_txn_ts"],
            state["velocity_1h"],
            state["small_velocity_1h"],
        )
    return pd.DataFrame(
        {
            "user_id": user,
            "event_timestamp": velocity_available_at(
                pd.to_datetime(txns["event_timestamp"].to_numpy()[order], utc=True)
            ),
            "last_txn_ts": last,
            "velocity_1h": vel,
            "small_velocity_1h": small,
        }
    )


DISPUTE_WINDOW_DAYS = 7


def _disputed_purchases(
    txns: pd.DataFrame,
    key: str,
    start: pd.Timestamp,
    n_days: int,
    backfilled_at: pd.Timestamp,
    window_days: int,
) -> pd.DataFrame:
    """Per ``key`` and day: purchases of the last ``window_days`` days, that day included, whose
    chargeback was known; columns ``key``, ``event_timestamp``, ``count``, ``available_ts``.

    How the risk team's dispute tables are written (see ``user_dispute_stats``): a row per entity
    and calendar day stamped with the day's start, disputes attributed to the day of the
    purchase, the history backfilled at ``backfilled_at`` with every chargeback known then and
    later days written at the end of each day with what had arrived by then. ``available_ts``
    is when the newest counted chargeback arrived (the row's own time when it counts none).
    """
    charged = txns["chargeback_timestamp"].notna().to_numpy()
    ids, idx = np.unique(txns[key].to_numpy()[charged], return_inverse=True)
    bought = _day_index(txns["event_timestamp"][charged], start)
    arrival = epoch_seconds(txns["chargeback_timestamp"][charged])
    backfill_s = pd.Timestamp(backfilled_at).timestamp()
    count = np.zeros((len(ids), n_days))
    newest = np.full((len(ids), n_days), np.nan)
    for k in range(n_days):
        day_end_s = (start + (k + 1) * DAY).timestamp()
        known = arrival < max(backfill_s, day_end_s)
        counted = known & (bought <= k) & (bought > k - window_days)
        count[:, k] = np.bincount(idx[counted], minlength=len(ids))
        latest = np.full(len(ids), -np.inf)
        np.maximum.at(latest, idx[counted], arrival[counted])
        newest[:, k] = np.where(np.isfinite(latest), latest, np.nan)
    # a row while a dispute is counted, and one the day after it drops out (reading zero), so
    # the latest row means the same online and offline
    alive = count > 0
    alive[:, 1:] |= count[:, :-1] > 0
    rows, day = np.nonzero(alive)
    stamp = _day_starts(start, day)
    available = np.where(
        np.isnan(newest[rows, day]), epoch_seconds(pd.Series(stamp)), newest[rows, day]
    )
    return pd.DataFrame(
        {
            key: ids[rows],
            "event_timestamp": stamp,
            "count": count[rows, day],
            "available_ts": available.astype(np.float64),
        }
    )


def user_dispute_stats(
    txns: pd.DataFrame, start: pd.Timestamp, n_days: int, backfilled_at: pd.Timestamp
) -> pd.DataFrame:
    """Per user and day: purchases of the last 7 days, that day included, that were disputed.

    The risk team's dispute table, as its daily job writes it: a row per user and calendar day
    (stamped with the day's date, i.e. its start), counting the user's purchases made that day
    or in the six before it whose chargeback the job knew of. Disputes are attributed to the
    day of the purchase, and the history was backfilled at ``backfilled_at`` with every
    chargeback known then; days after it were written by the daily job at the end of each day.

    ``user_disputes_available_ts`` (epoch seconds) says when the newest chargeback a row counts
    arrived (the row's own time when it counts none): the time its value could first be known.
    """
    table = _disputed_purchases(txns, "user_id", start, n_days, backfilled_at, DISPUTE_WINDOW_DAYS)
    return table.rename(
        columns={
            "count": "user_disputed_txn_count_7d",
            "available_ts": "user_disputes_available_ts",
        }
    )


def merchant_dispute_stats(
    txns: pd.DataFrame, start: pd.Timestamp, n_days: int, backfilled_at: pd.Timestamp
) -> pd.DataFrame:
    """Per merchant and day: purchases at the merchant in the last 7 days, that day included,
    that were disputed.

    The risk team's merchant dispute table, written exactly like their user table
    (``user_dispute_stats``): disputes attributed to the day of the purchase — where
    ``merchant_stats`` counts a chargeback on the day it arrives — with the history backfilled
    at ``backfilled_at`` and later days written at the end of each day.

    ``merchant_disputes_available_ts`` (epoch seconds) says when the newest chargeback a row
    counts arrived (the row's own time when it counts none).
    """
    table = _disputed_purchases(
        txns, "merchant_id", start, n_days, backfilled_at, DISPUTE_WINDOW_DAYS
    )
    return table.rename(
        columns={
            "count": "merchant_disputed_txn_count_7d",
            "available_ts": "merchant_disputes_available_ts",
        }
    )
