"""The model registry seam: MLflow runs, registered versions, aliases and model bundles.

Owns: how a trained model is stored (one MLflow run holding a ``bundle/`` folder with the
ONNX graph, the model spec and the evaluation material, plus an MLflow ONNX model registered
under ``Settings.model_name``) and how any process loads the model an alias points at.
Must not: train or evaluate (``pipelines.training``), or serve.

A bundle is everything serving needs and nothing it must re-derive: the ONNX file, the ordered
feature list, the feature service it was trained on, the transform version and the decision
threshold. Serving keeps the last bundle it loaded on disk, so it can start and keep serving
while the tracking server is down.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from foundation.settings import Settings

BUNDLE_DIR = "bundle"
ONNX_FILE = "model.onnx"
NATIVE_FILE = "model.lgb.txt"
SPEC_FILE = "model_spec.json"
CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class ModelBundle:
    """A registered model version as serving sees it."""

    name: str
    version: str
    run_id: str
    directory: Path
    spec: dict[str, Any]

    @property
    def onnx_path(self) -> Path:
        return self.directory / ONNX_FILE

    @property
    def feature_order(self) -> list[str]:
        return list(self.spec["feature_order"])

    @property
    def threshold(self) -> float:
        return float(self.spec["threshold"])

    @property
    def feature_service(self) -> str:
        return str(self.spec["feature_service"])


def client(settings: Settings):  # -> mlflow.MlflowClient
    import mlflow

    mlflow.set_tracking_uri(settings.tracking_uri)
    return mlflow.MlflowClient(tracking_uri=settings.tracking_uri)


def resolve_alias(settings: Settings, alias: str = CHAMPION) -> tuple[str, str] | None:
    """(version, run_id) the alias points at, or None when the model or alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        mv = client(settings).get_model_version_by_alias(settings.model_name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
    return str(mv.version), str(mv.run_id)


def download_bundle(settings: Settings, version: str, run_id: str, cache: Path) -> ModelBundle:
    """Fetch a version's bundle into ``cache/<version>`` (atomically) and return it."""
    import mlflow

    # a progress bar per bundle download is noise in service logs and CLI output alike
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    target = cache / str(version)
    if not (target / SPEC_FILE).exists():
        staging = cache / f".{version}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        mlflow.set_tracking_uri(settings.tracking_uri)
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=BUNDLE_DIR, dst_path=str(staging)
        )
        shutil.rmtree(target, ignore_errors=True)
        (staging / BUNDLE_DIR).rename(target)
        shutil.rmtree(staging, ignore_errors=True)
        (target / "version.json").write_text(
            json.dumps({"name": settings.model_name, "version": str(version), "run_id": run_id})
        )
    return read_bundle(target)


def read_bundle(directory: Path) -> ModelBundle:
    meta = json.loads((directory / "version.json").read_text())
    spec = json.loads((directory / SPEC_FILE).read_text())
    return ModelBundle(meta["name"], meta["version"], meta["run_id"], directory, spec)


def load_alias(settings: Settings, cache: Path, alias: str = CHAMPION) -> ModelBundle:
    """The bundle ``alias`` points at; raises LookupError when there is none."""
    found = resolve_alias(settings, alias)
    if found is None:
        raise LookupError(
            f"model '{settings.model_name}' has no '{alias}' version in {settings.tracking_uri}:"
            " run `make train` (or `fraudlab train`) first"
        )
    bundle = download_bundle(settings, found[0], found[1], cache)
    (cache / f"{alias}.json").write_text(json.dumps({"version": bundle.version}))
    return bundle


def last_loaded(cache: Path, alias: str = CHAMPION) -> ModelBundle | None:
    """The bundle this cache last loaded for ``alias`` (used when MLflow is unreachable)."""
    pointer = cache / f"{alias}.json"
    if not pointer.exists():
        return None
    version = json.loads(pointer.read_text())["version"]
    directory = cache / str(version)
    return read_bundle(directory) if (directory / SPEC_FILE).exists() else None


def version_tags(settings: Settings, version: str) -> dict[str, str]:
    """The tags of one registered version (lineage: transform version, feature service, ...)."""
    return dict(client(settings).get_model_version(settings.model_name, str(version)).tags or {})


def set_alias(settings: Settings, alias: str, version: str) -> None:
    client(settings).set_registered_model_alias(settings.model_name, alias, str(version))
