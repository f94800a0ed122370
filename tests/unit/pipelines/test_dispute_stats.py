"""The risk team's dispute table: what a row counts, and when its value could be known.

The table leaks by construction in its backfilled history (disputes attributed to the day of
the purchase, counted with hindsight, the whole day stamped at its start); the rows written
after the backfill count only what had arrived. ``user_disputes_available_ts`` records when
the newest counted dispute arrived, which is what lets the leakage gate see the leak.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines import feature_tables

START = pd.Timestamp("2026-01-01", tz="UTC")
DAY = pd.Timedelta(days=1)


def txns(rows: list[tuple[int, str, str | None]]) -> pd.DataFrame:
    """(user, purchase time, chargeback arrival or None) → a transactions frame."""
    return pd.DataFrame(
        {
            "user_id": [r[0] for r in rows],
            "event_timestamp": pd.to_datetime([r[1] for r in rows], utc=True),
            "chargeback_timestamp": pd.to_datetime([r[2] for r in rows], utc=True),
        }
    )


@pytest.fixture
def table() -> pd.DataFrame:
    frame = txns(
        [
            (1, "2026-01-03 15:00", "2026-01-09 10:00"),  # disputed, arrives six days later
            (1, "2026-01-04 09:00", None),
            (2, "2026-01-05 12:00", None),  # never disputed: no rows at all
            (3, "2026-01-12 08:00", "2026-01-13 08:00"),  # after the backfill (Jan 10)
        ]
    )
    return feature_tables.user_dispute_stats(frame, START, 20, backfilled_at=START + 9 * DAY)


def rows_of(table: pd.DataFrame, user: int) -> pd.DataFrame:
    return table[table["user_id"] == user].set_index("event_timestamp")


def test_backfilled_history_counts_a_dispute_from_the_day_of_the_purchase(table) -> None:
    user1 = rows_of(table, 1)
    # the row stamped Jan 3 00:00 already counts the purchase made at 15:00 that day
    assert user1.loc[START + 2 * DAY, "user_disputed_txn_count_7d"] == 1
    # ... though nobody knew of the dispute before Jan 9
    arrival = pd.Timestamp("2026-01-09 10:00", tz="UTC").timestamp()
    assert user1.loc[START + 2 * DAY, "user_disputes_available_ts"] == arrival
    # seven days including the purchase day, then one row reading zero
    counted = user1["user_disputed_txn_count_7d"]
    assert counted[counted > 0].index.tolist() == [START + k * DAY for k in range(2, 9)]
    assert counted.loc[START + 9 * DAY] == 0
    assert (
        user1.loc[START + 9 * DAY, "user_disputes_available_ts"] == (START + 9 * DAY).timestamp()
    )
    assert 2 not in set(table["user_id"])


def test_rows_after_the_backfill_count_only_disputes_arrived_by_the_day_end(table) -> None:
    user3 = rows_of(table, 3)
    # purchase on Jan 12, dispute arrives Jan 13 08:00: the Jan 12 row (written at its end)
    # cannot know it; the Jan 13 row can
    assert START + 11 * DAY not in user3.index
    assert user3.loc[START + 12 * DAY, "user_disputed_txn_count_7d"] == 1


def test_availability_after_the_event_time_is_what_the_leakage_screen_counts(table) -> None:
    from pipelines.gates import late_timestamp_rows

    # the disputed purchase itself, joined point-in-time to the row of its day
    joined = pd.DataFrame(
        {
            "event_timestamp": pd.to_datetime(["2026-01-03 15:00", "2026-01-12 09:00"], utc=True),
            "user_disputes_available_ts": [
                rows_of(table, 1).loc[START + 2 * DAY, "user_disputes_available_ts"],
                np.nan,  # user 3 had no row yet: nothing joined, nothing late
            ],
        }
    )
    assert late_timestamp_rows(joined, ["user_disputes_available_ts"]) == {
        "user_disputes_available_ts": 1
    }


def test_the_merchant_table_attributes_disputes_to_the_purchase_day_with_hindsight() -> None:
    """Written like the user table, per merchant: the backfill knows disputes that arrived days
    after the purchase; merchant_stats, which counts chargebacks on arrival, does not."""
    frame = pd.DataFrame(
        {
            "merchant_id": [7, 7, 8],
            "user_id": [1, 2, 3],
            "event_timestamp": pd.to_datetime(
                ["2026-01-03 15:00", "2026-01-03 16:00", "2026-01-04 10:00"], utc=True
            ),
            "chargeback_timestamp": pd.to_datetime(
                ["2026-01-09 10:00", "2026-01-08 10:00", None], utc=True
            ),
        }
    )
    table = feature_tables.merchant_dispute_stats(frame, START, 20, backfilled_at=START + 9 * DAY)
    merchant7 = table[table["merchant_id"] == 7].set_index("event_timestamp")
    # both disputed purchases of Jan 3 are counted from the row stamped Jan 3 00:00 ...
    assert merchant7.loc[START + 2 * DAY, "merchant_disputed_txn_count_7d"] == 2
    # ... which could not be known before the later of the two arrived
    arrival = pd.Timestamp("2026-01-09 10:00", tz="UTC").timestamp()
    assert merchant7.loc[START + 2 * DAY, "merchant_disputes_available_ts"] == arrival
    counted = merchant7["merchant_disputed_txn_count_7d"]
    assert counted[counted > 0].index.tolist() == [START + k * DAY for k in range(2, 9)]
    assert counted.loc[START + 9 * DAY] == 0
    # a merchant without disputes has no rows (the feature store then serves the default 0)
    assert 8 not in set(table["merchant_id"])


def test_rows_after_the_backfill_are_the_same_for_users_and_merchants() -> None:
    """One way of writing dispute tables: the same purchases give the same counts per key."""
    frame = txns(
        [
            (1, "2026-01-12 08:00", "2026-01-13 08:00"),
            (1, "2026-01-12 09:00", "2026-01-15 08:00"),
            (1, "2026-01-14 09:00", None),
        ]
    ).assign(merchant_id=1)
    users = feature_tables.user_dispute_stats(frame, START, 20, backfilled_at=START + 9 * DAY)
    merchants = feature_tables.merchant_dispute_stats(
        frame, START, 20, backfilled_at=START + 9 * DAY
    )
    assert users["user_disputed_txn_count_7d"].tolist() == (
        merchants["merchant_disputed_txn_count_7d"].tolist()
    )
    assert users["user_disputes_available_ts"].tolist() == (
        merchants["merchant_disputes_available_ts"].tolist()
    )
    # counted only from the day each chargeback arrived: nothing before Jan 13
    assert merchants["event_timestamp"].min() == START + 12 * DAY
