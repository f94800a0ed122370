"""Data stages: generate the synthetic world, build the feature tables, read them back.

Owns: the on-disk layout of raw data (``<home>/data``), the feature warehouse tables
(``<home>/features``) and the chargeback label feed (``<home>/labels``). The raw transaction
table plays the company's warehouse: it holds the replayed future too, but nothing reads past
the stack's clock (``meta.json``'s ``now``, advanced by the traffic simulator).

Must not: train, serve, or open the online store.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from foundation.settings import Settings
from foundation.timeutil import epoch_seconds  # noqa: F401  (re-exported)
from pipelines import feature_tables
from pipelines.generate import GENERATOR_VERSION, WorldConfig, generate

RAW_FILES = ("users", "merchants", "transactions")
# What a scoring request knows about a transaction: no label, no fraud pattern, no chargeback.
REQUEST_COLUMNS = (
    "txn_id",
    "event_timestamp",
    "user_id",
    "merchant_id",
    "device_id",
    "amount",
    "channel",
    "ip_region",
)


def world_config(settings: Settings) -> WorldConfig:
    return WorldConfig.from_settings(settings)


def meta_path(settings: Settings) -> Path:
    return settings.data_dir / "meta.json"


def read_meta(settings: Settings) -> dict:
    path = meta_path(settings)
    if not path.exists():
        raise FileNotFoundError(f"no generated data at {settings.data_dir}: run `fraudlab data`")
    return json.loads(path.read_text())


def data_exists(settings: Settings) -> bool:
    """The generated world matches these settings and this generator."""
    if not meta_path(settings).exists():
        return False
    meta = read_meta(settings)
    return (
        meta.get("config") == asdict(world_config(settings))
        and meta.get("generator_version") == GENERATOR_VERSION
    )


def tables_path(settings: Settings) -> Path:
    return settings.feature_data_dir / "tables.json"


def feature_tables_current(settings: Settings) -> bool:
    """The feature tables were built from the current world by this version of the code."""
    try:
        built = json.loads(tables_path(settings).read_text())
    except (FileNotFoundError, ValueError):
        return False
    return built.get("version") == feature_tables.FEATURE_TABLES_VERSION and built.get(
        "transactions_hash"
    ) == read_meta(settings).get("transactions_hash")


def frame_hash(frame: pd.DataFrame) -> str:
    """A content hash of a table: the data version recorded with every model."""
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    digest.update(",".join(map(str, frame.columns)).encode())
    return digest.hexdigest()[:16]


def generate_world(settings: Settings) -> dict:
    """Generate raw data and the history part of the label feed; return the metadata."""
    config = world_config(settings)
    world = generate(config)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    for name in RAW_FILES:
        getattr(world, name).to_parquet(settings.data_dir / f"{name}.parquet", index=False)
    txns = world.transactions
    labels = txns.loc[
        txns["chargeback_timestamp"] < config.now, ["txn_id", "chargeback_timestamp"]
    ]
    settings.label_dir.mkdir(parents=True, exist_ok=True)
    clock_path(settings).unlink(missing_ok=True)
    for stale in settings.label_dir.glob("*.parquet"):
        stale.unlink()
    labels.to_parquet(settings.label_dir / "history.parquet", index=False)
    meta = {
        "config": asdict(config),
        "generator_version": GENERATOR_VERSION,
        "start": config.start.isoformat(),
        "now": config.now.isoformat(),
        "end": config.end.isoformat(),
        "n_transactions": len(txns),
        "n_history": int((txns["event_timestamp"] < config.now).sum()),
        "fraud_rate": float(txns["is_fraud"].mean()),
        "transactions_hash": frame_hash(txns),
    }
    meta_path(settings).write_text(json.dumps(meta, indent=2))
    return meta


def archive_predictions(settings: Settings) -> Path | None:
    """Move the prediction log out of the monitors' way before a new world is generated.

    Its records belong to the world that is being replaced (other users, another clock); the
    monitors would judge them against the new one. Kept under
    ``<prediction_log_dir>/archive/<UTC stamp>-previous-world/``; None when there was none.
    """
    current = sorted(settings.prediction_log_dir.glob("predictions-*.jsonl"))
    if not current:
        return None
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%SZ")
    target = settings.prediction_log_dir / "archive" / f"{stamp}-previous-world"
    target.mkdir(parents=True, exist_ok=True)
    for path in current:
        path.rename(target / path.name)
    return target


def read_raw(settings: Settings, name: str) -> pd.DataFrame:
    return pd.read_parquet(settings.data_dir / f"{name}.parquet")


def build_feature_tables(settings: Settings) -> dict[str, int]:
    """Write every offline feature table; return rows written per table."""
    meta = read_meta(settings)
    start = pd.Timestamp(meta["start"])
    n_days = round((pd.Timestamp(meta["end"]) - start) / pd.Timedelta(days=1))
    txns = read_raw(settings, "transactions")
    users = read_raw(settings, "users")
    merchants = read_raw(settings, "merchants")
    tables = {
        "user_stats": feature_tables.user_stats(txns, start, n_days),
        "merchant_stats": feature_tables.merchant_stats(txns, merchants, start, n_days),
        "user_device_stats": feature_tables.user_device_stats(txns, start, n_days),
        "user_profile": feature_tables.user_profile(users),
        "user_velocity": feature_tables.user_velocity(txns),
        "user_dispute_stats": feature_tables.user_dispute_stats(
            txns, start, n_days, pd.Timestamp(meta["now"])
        ),
        "merchant_dispute_stats": feature_tables.merchant_dispute_stats(
            txns, start, n_days, pd.Timestamp(meta["now"])
        ),
    }
    settings.feature_data_dir.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        # microsecond timestamps: DuckDB (Feast's offline engine here) cannot cast tz-aware ns
        table["event_timestamp"] = table["event_timestamp"].astype("datetime64[us, UTC]")
        table.to_parquet(settings.feature_data_dir / f"{name}.parquet", index=False)
    tables_path(settings).write_text(
        json.dumps(
            {
                "version": feature_tables.FEATURE_TABLES_VERSION,
                "transactions_hash": meta["transactions_hash"],
            }
        )
    )
    return {name: len(table) for name, table in tables.items()}


def read_labels(settings: Settings, as_of: pd.Timestamp | None = None) -> pd.DataFrame:
    """Chargebacks that had arrived by ``as_of`` (all that arrived so far when None)."""
    files = sorted(settings.label_dir.glob("*.parquet"))
    if not files:
        return pd.DataFrame(
            {
                "txn_id": pd.Series(dtype="int64"),
                "chargeback_timestamp": pd.Series(dtype="datetime64[ns, UTC]"),
            }
        )
    labels = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    labels = labels.drop_duplicates("txn_id")
    if as_of is not None:
        labels = labels[labels["chargeback_timestamp"] <= as_of]
    return labels.reset_index(drop=True)


def clock_path(settings: Settings) -> Path:
    return settings.data_dir / "clock.json"


def read_clock(settings: Settings) -> pd.Timestamp:
    """The stack's simulated present: end of history until the traffic simulator advances it."""
    path = clock_path(settings)
    if path.exists():
        return pd.Timestamp(json.loads(path.read_text())["now"])
    return pd.Timestamp(read_meta(settings)["now"])


def write_clock(settings: Settings, now: pd.Timestamp) -> None:
    """Advance the simulated present (atomically: readers never see a half-written file)."""
    path = clock_path(settings)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"now": pd.Timestamp(now).isoformat()}))
    tmp.replace(path)
