"""Opening the Feast feature store, applying its definitions, materialising it.

Owns: the one way any fraudlab process gets a ``FeatureStore`` (configured from the settings
object through ``feature_store.yaml``'s ``${VAR}`` expansion) and the materialisation step.
Must not: define features (``features.definitions``) or transform them (``features.transforms``).
"""

from __future__ import annotations

import os
import warnings
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from fraudlab.settings import Settings, get_settings

if TYPE_CHECKING:
    from feast import FeatureStore

FEATURE_REPO = Path(__file__).resolve().parent


def feast_environment(settings: Settings) -> dict[str, str]:
    """The variables ``feature_store.yaml`` expands."""
    return {
        "FRAUDLAB_FEAST_REGISTRY_PATH": str(settings.feast_registry),
        "FRAUDLAB_FEAST_ONLINE_PATH": str(settings.feast_online_path),
    }


def open_store(settings: Settings | None = None) -> FeatureStore:
    """A FeatureStore for this environment (about two seconds: Feast's import dominates)."""
    settings = settings or get_settings()
    for key, value in feast_environment(settings).items():
        os.environ[key] = value  # the settings object is the truth, not a stale variable
    settings.feast_registry.parent.mkdir(parents=True, exist_ok=True)
    # ibis (under Feast's DuckDB offline store) calls a DuckDB method DuckDB now deprecates;
    # the warning says nothing a fraudlab user can act on.
    warnings.filterwarnings("ignore", message=".*fetch_arrow_table", category=DeprecationWarning)
    from feast import FeatureStore

    return FeatureStore(repo_path=str(FEATURE_REPO))


def apply_definitions(store: FeatureStore, settings: Settings | None = None) -> None:
    """Register entities, sources, views and services (idempotent)."""
    from features.definitions import build

    store.apply(build((settings or get_settings()).feature_data_dir))


# Views whose rows are facts fixed when the entity is created (an account's sign-up date and
# home region). The account service writes them as the account opens, before it can transact,
# so they are loaded a day ahead of the clock: a customer who signs up today is known today.
# No transaction precedes its account, so this cannot leak anything into a score.
CREATED_WITH_ENTITY = ("user_profile",)
CREATED_WITH_ENTITY_LEAD = timedelta(days=1)


def _allow_reads_during_writes(store: FeatureStore) -> None:
    """SQLite online store: write-ahead logging, so serving's reads never wait on a writer.

    In SQLite's default journal mode a materialisation's commit locks readers out; serving
    would then stall (or fall back) every night. WAL mode is a property of the database file,
    so setting it once is enough; other online stores need nothing here.
    """
    config = store.config.online_store
    if getattr(config, "type", None) == "sqlite":
        import sqlite3

        path = Path(config.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA journal_mode=WAL")


def materialize(store: FeatureStore, end: datetime) -> None:
    """Load every view's values up to ``end`` into the online store (incrementally)."""
    _allow_reads_during_writes(store)
    views = [fv.name for fv in store.list_feature_views()]
    batch = [name for name in views if name not in CREATED_WITH_ENTITY]
    ahead = [name for name in views if name in CREATED_WITH_ENTITY]
    if batch:
        store.materialize_incremental(end_date=end, feature_views=batch)
    if ahead:
        store.materialize_incremental(end_date=end + CREATED_WITH_ENTITY_LEAD, feature_views=ahead)
