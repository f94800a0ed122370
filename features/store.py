"""Opening the Feast feature store, applying its definitions, materialising it.

Owns: the one way any fraudlab process gets a ``FeatureStore`` (configured from the settings
object through ``feature_store.yaml``'s ``${VAR}`` expansion) and the materialisation step.
Must not: define features (``features.definitions``) or transform them (``features.transforms``).
"""

from __future__ import annotations

import os
from datetime import datetime
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
    from feast import FeatureStore

    return FeatureStore(repo_path=str(FEATURE_REPO))


def apply_definitions(store: FeatureStore, settings: Settings | None = None) -> None:
    """Register entities, sources, views and services (idempotent)."""
    from features.definitions import build

    store.apply(build((settings or get_settings()).feature_data_dir))


def materialize(store: FeatureStore, end: datetime) -> None:
    """Load every view's values up to ``end`` into the online store (incrementally)."""
    store.materialize_incremental(end_date=end)
