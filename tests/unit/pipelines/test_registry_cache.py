"""The on-disk bundle cache of registered versions (serving, monitors and gates each keep one).

MLflow numbers a new version max + 1, so once the newest version is deleted (a baseline restore
deletes what was registered after it) the next model registered gets the same number. The
cache must then fetch the new model, not hand back the deleted one it still holds.
"""

from __future__ import annotations

import json

import mlflow

from fraudlab.settings import Settings
from pipelines.registry import BUNDLE_DIR, SPEC_FILE, download_bundle


def log_bundle(tmp_path, threshold: float) -> str:
    """A run whose bundle artifact holds a spec with this threshold; returns its run id."""
    source = tmp_path / f"bundle-{threshold}"
    source.mkdir()
    (source / SPEC_FILE).write_text(json.dumps({"threshold": threshold, "feature_order": []}))
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(source), artifact_path=BUNDLE_DIR)
    return run.info.run_id


def test_a_reused_version_number_fetches_the_new_model(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    settings = Settings(_env_file=None, home=tmp_path / "home", mlflow_tracking_uri=uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("cache")
    first, second = log_bundle(tmp_path, 0.1), log_bundle(tmp_path, 0.7)
    cache = tmp_path / "cache"

    assert download_bundle(settings, "2", first, cache).threshold == 0.1
    # the same version and run again: served from the cache
    assert download_bundle(settings, "2", first, cache).run_id == first
    # version 2 deleted and a new model registered as version 2: the new one, not the cached one
    bundle = download_bundle(settings, "2", second, cache)
    assert (bundle.run_id, bundle.threshold) == (second, 0.7)
