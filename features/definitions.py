"""Feast objects of fraudlab: entities, sources, feature views and the feature service.

Owns: the contract between training and serving. ``fraud_model_v1`` is the versioned
FeatureService both sides fetch through (``fraud_model_v2`` and ``fraud_model_v3`` add the risk
team's dispute tables); a model records which service it was trained on.
Must not: compute anything (batch tables come from ``pipelines.feature_tables``; transforms
after retrieval from ``features.transforms``).

Source paths are arguments of ``build``, so the same definitions serve every environment.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from feast import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    PushSource,
    RequestSource,
    ValueType,
)
from feast.types import Float64, String

from foundation.settings import get_settings

# --- entities ---------------------------------------------------------------------------
user = Entity(
    name="user", join_keys=["user_id"], value_type=ValueType.INT64, description="A card holder."
)
merchant = Entity(
    name="merchant",
    join_keys=["merchant_id"],
    value_type=ValueType.INT64,
    description="A merchant accepting card-not-present payments.",
)
device = Entity(
    name="device",
    join_keys=["device_id"],
    value_type=ValueType.INT64,
    description="A device fingerprint seen at checkout.",
)


# Expected freshness of each view's online values (tag ``freshness_sla``: simulated time, judged
# by monitoring.freshness against the stack's clock). Daily snapshot views are materialised at
# each midnight, so their healthy age stays under a day; two hours of slack for the run itself.
# user_profile is loaded a day ahead of the clock (features.store.CREATED_WITH_ENTITY): its
# healthy age is below zero. Serving pushes the velocity state after every scored transaction,
# so the online state must have caught up with what serving scored (lag, not age).
DAILY_SLA = "26h"
CREATED_WITH_ENTITY_SLA = "2h"
PUSH_SLA = "10min"


def build(data_dir: Path) -> list:
    """Every Feast object, with sources reading the warehouse tables under ``data_dir``."""

    def _source(name: str) -> FileSource:
        return FileSource(
            name=f"{name}_source",
            path=str(data_dir / f"{name}.parquet"),
            timestamp_field="event_timestamp",
        )

    # --- sources ----------------------------------------------------------------------------
    user_stats_source = _source("user_stats")
    merchant_stats_source = _source("merchant_stats")
    user_device_stats_source = _source("user_device_stats")
    user_profile_source = _source("user_profile")
    user_velocity_batch_source = _source("user_velocity")
    user_dispute_stats_source = _source("user_dispute_stats")
    merchant_dispute_stats_source = _source("merchant_dispute_stats")
    # Serving pushes the velocity state after each scored transaction; the batch source holds the
    # same state rebuilt from history, for training and backfills.
    user_velocity_push_source = PushSource(
        name="user_velocity_push", batch_source=user_velocity_batch_source
    )
    # Fields that arrive with the request itself rather than from a store.
    transaction_request = RequestSource(
        name="transaction_request",
        schema=[
            Field(name="amount", dtype=Float64),
            Field(name="channel", dtype=String),
            Field(name="ip_region", dtype=String),
            Field(name="event_ts", dtype=Float64),
        ],
    )

    # --- feature views ----------------------------------------------------------------------
    # Snapshot views carry the latest value as of the start of each day; a long TTL is safe
    # because a snapshot row is written whenever the value changes (see feature_tables).
    user_stats_fv = FeatureView(
        name="user_stats",
        entities=[user],
        ttl=timedelta(days=400),
        schema=[
            Field(name="user_txn_count_1d", dtype=Float64),
            Field(name="user_txn_count_7d", dtype=Float64),
            Field(name="user_amount_mean_30d", dtype=Float64),
            Field(name="user_amount_std_30d", dtype=Float64),
            Field(name="user_chargeback_count_90d", dtype=Float64),
        ],
        source=user_stats_source,
        online=True,
        tags={"owner": "fraud-ml", "kind": "batch", "freshness_sla": DAILY_SLA},
    )

    user_profile_fv = FeatureView(
        name="user_profile",
        entities=[user],
        ttl=timedelta(days=3650),
        schema=[
            Field(name="signup_ts", dtype=Float64),
            Field(name="home_region", dtype=String),
        ],
        source=user_profile_source,
        online=True,
        tags={"owner": "fraud-ml", "kind": "batch", "freshness_sla": CREATED_WITH_ENTITY_SLA},
    )

    merchant_stats_fv = FeatureView(
        name="merchant_stats",
        entities=[merchant],
        ttl=timedelta(days=400),
        schema=[
            Field(name="merchant_category", dtype=String),
            Field(name="merchant_txn_count_7d", dtype=Float64),
            Field(name="merchant_amount_mean_30d", dtype=Float64),
            Field(name="merchant_chargeback_rate_30d", dtype=Float64),
        ],
        source=merchant_stats_source,
        online=True,
        tags={"owner": "fraud-ml", "kind": "batch", "freshness_sla": DAILY_SLA},
    )

    user_device_stats_fv = FeatureView(
        name="user_device_stats",
        entities=[user, device],
        ttl=timedelta(days=400),
        schema=[Field(name="user_device_txn_count_30d", dtype=Float64)],
        source=user_device_stats_source,
        online=True,
        tags={"owner": "fraud-ml", "kind": "batch", "freshness_sla": DAILY_SLA},
    )

    user_velocity_fv = FeatureView(
        name="user_velocity",
        entities=[user],
        ttl=timedelta(days=400),
        schema=[
            Field(name="last_txn_ts", dtype=Float64),
            Field(name="velocity_1h", dtype=Float64),
            Field(name="small_velocity_1h", dtype=Float64),
        ],
        source=user_velocity_push_source,
        online=True,
        tags={"owner": "fraud-ml", "kind": "push", "freshness_sla": PUSH_SLA},
    )

    # The risk team's dispute table (``pipelines.feature_tables.user_dispute_stats``): purchases
    # of the last 7 days that were disputed, with when the newest counted dispute arrived.
    user_dispute_stats_fv = FeatureView(
        name="user_dispute_stats",
        entities=[user],
        ttl=timedelta(days=400),
        schema=[
            Field(name="user_disputed_txn_count_7d", dtype=Float64),
            Field(name="user_disputes_available_ts", dtype=Float64),
        ],
        source=user_dispute_stats_source,
        online=True,
        tags={"owner": "risk-analytics", "kind": "batch", "freshness_sla": DAILY_SLA},
    )

    # The risk team's merchant dispute table (``pipelines.feature_tables.merchant_dispute_stats``):
    # purchases at the merchant of the last 7 days that were disputed, with when the newest
    # counted dispute arrived.
    merchant_dispute_stats_fv = FeatureView(
        name="merchant_dispute_stats",
        entities=[merchant],
        ttl=timedelta(days=400),
        schema=[
            Field(name="merchant_disputed_txn_count_7d", dtype=Float64),
            Field(name="merchant_disputes_available_ts", dtype=Float64),
        ],
        source=merchant_dispute_stats_source,
        online=True,
        tags={"owner": "risk-analytics", "kind": "batch", "freshness_sla": DAILY_SLA},
    )

    # --- the contract -------------------------------------------------------------------------
    fraud_model_v1 = FeatureService(
        name="fraud_model_v1",
        features=[
            user_stats_fv,
            user_profile_fv,
            merchant_stats_fv,
            user_device_stats_fv,
            user_velocity_fv,
        ],
        description="Features of the card-not-present fraud model, version 1.",
        tags={"owner": "fraud-ml"},
    )
    fraud_model_v2 = FeatureService(
        name="fraud_model_v2",
        features=[
            user_stats_fv,
            user_profile_fv,
            merchant_stats_fv,
            user_device_stats_fv,
            user_velocity_fv,
            user_dispute_stats_fv,
        ],
        description="Version 1 plus the user's recent disputes (risk team's dispute table).",
        tags={"owner": "fraud-ml"},
    )
    fraud_model_v3 = FeatureService(
        name="fraud_model_v3",
        features=[
            user_stats_fv,
            user_profile_fv,
            merchant_stats_fv,
            user_device_stats_fv,
            user_velocity_fv,
            merchant_dispute_stats_fv,
        ],
        description="Version 1 plus the merchant's recent disputes (risk team's dispute table).",
        tags={"owner": "fraud-ml"},
    )

    return [
        user,
        merchant,
        device,
        transaction_request,
        user_velocity_push_source,
        user_stats_fv,
        user_profile_fv,
        merchant_stats_fv,
        user_device_stats_fv,
        user_velocity_fv,
        user_dispute_stats_fv,
        merchant_dispute_stats_fv,
        fraud_model_v1,
        fraud_model_v2,
        fraud_model_v3,
    ]


# Module-level objects, for `feast` CLI users and for reading; the stack applies build(...).
ALL_OBJECTS = build(get_settings().feature_data_dir)
OBJECTS_BY_NAME = {obj.name: obj for obj in ALL_OBJECTS}
fraud_model_v1 = OBJECTS_BY_NAME["fraud_model_v1"]
