"""The healthy baseline an incident breaks and ``reset`` returns to.

Owns: the snapshot of the embedded stack's mutable state taken when an incident is injected
into a healthy stack, and restoring it. The snapshot (``<home>/lab/baseline/``, neutral names)
holds:

- the data the stack lives on: raw tables, clock, traffic replay state, label feed, offline
  feature tables, the Feast registry and online store (SQLite, copied with its backup API so a
  serving process reading it meanwhile does not matter);
- the model registry's aliases and the highest registered version;
- the serving release, the stack's live overrides (``<home>/overrides.env``) and its
  schedules' pause states (``<home>/schedules.json``);
- the size of each prediction-log file.

Restoring stops traffic and serving, puts every file back, moves prediction records written
since the snapshot into ``<home>/predictions/archive/<UTC stamp>/`` (nothing is lost, and the
monitors judge the baseline's traffic again), deletes model versions registered since, points
the aliases back, and starts serving (and traffic, if the stack runs it) on the baseline
release. Whatever a scenario or a candidate changed in those places — a half-finished fix
included — is undone; the working tree of the repository is not touched.

Must not: know any scenario. Embedded stack only: a containerised stack's state lives in its
volumes and servers (PostgreSQL, Redis), which this module does not reach.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fraudlab.settings import OVERRIDES_FILE, Settings

ALIASES = ("champion", "previous_champion", "challenger")
MANIFEST = "baseline.json"
# Small state files at the top of the home, restored as they were (absent stays absent).
HOME_FILES = (OVERRIDES_FILE, "schedules.json")


def root(settings: Settings) -> Path:
    return settings.home.resolve() / "lab" / "baseline"


def _directories(settings: Settings) -> dict[str, Path]:
    """Directories restored as a whole (name in the snapshot → live path)."""
    return {
        "data": settings.data_dir,
        "labels": settings.label_dir,
        "features": settings.feature_data_dir,
    }


def _copy_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite database that another process may be writing."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


def _registry_state(settings: Settings) -> dict[str, Any]:
    from pipelines.registry import client, resolve_alias

    mlflow = client(settings)
    versions = mlflow.search_model_versions(f"name='{settings.model_name}'")
    aliases = {}
    for alias in ALIASES:
        found = resolve_alias(settings, alias)
        if found is not None:
            aliases[alias] = found[0]
    return {
        "aliases": aliases,
        "max_version": max((int(v.version) for v in versions), default=0),
    }


def exists(settings: Settings) -> bool:
    return (root(settings) / MANIFEST).exists()


def take(settings: Settings) -> dict[str, Any]:
    """Snapshot the stack as it is now (call it on a healthy stack); returns the manifest."""
    from fraudlab import releases

    if settings.mlflow_tracking_uri or settings.serving_url:
        raise RuntimeError(
            "the baseline snapshot covers the embedded stack only (MLflow or serving is external)"
        )
    target = root(settings)
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name, live in _directories(settings).items():
        if live.exists():
            shutil.copytree(live, staging / name)
    feast = staging / "feast"
    feast.mkdir()
    if settings.feast_registry.exists():
        shutil.copy2(settings.feast_registry, feast / settings.feast_registry.name)
    if settings.feast_online_path.exists():
        _copy_sqlite(settings.feast_online_path, feast / settings.feast_online_path.name)
    saved_files = []
    for name in HOME_FILES:
        path = settings.home.resolve() / name
        if path.exists():
            shutil.copy2(path, staging / name)
            saved_files.append(name)
    release = releases.current(settings)
    manifest = {
        "taken_at": datetime.now(UTC).isoformat(),
        "registry": _registry_state(settings),
        "release": release.id if release else None,
        "home_files": saved_files,
        "prediction_log": {
            p.name: p.stat().st_size
            for p in settings.prediction_log_dir.glob("predictions-*.jsonl")
        },
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return manifest


def _archive_new_predictions(settings: Settings, sizes: dict[str, int], stamp: str) -> int:
    """Move prediction records written since the snapshot into the archive; bytes moved."""
    archive = settings.prediction_log_dir / "archive" / stamp
    moved = 0
    for path in sorted(settings.prediction_log_dir.glob("predictions-*.jsonl")):
        keep = sizes.get(path.name, 0)
        size = path.stat().st_size
        if size <= keep:
            continue
        archive.mkdir(parents=True, exist_ok=True)
        with path.open("rb") as handle:
            handle.seek(keep)
            tail = handle.read()
        (archive / path.name).write_bytes(tail)
        if keep:
            with path.open("r+b") as handle:
                handle.truncate(keep)
        else:
            path.unlink()
        moved += len(tail)
    return moved


def _restore_registry(
    settings: Settings, state: dict[str, Any], log: Callable[[str], None]
) -> None:
    from pipelines.registry import client, resolve_alias, set_alias

    mlflow = client(settings)
    for version in mlflow.search_model_versions(f"name='{settings.model_name}'"):
        if int(version.version) > int(state["max_version"]):
            mlflow.delete_model_version(settings.model_name, version.version)
            log(f"deleted model version {version.version} (registered after the baseline)")
    for alias in ALIASES:
        wanted = state["aliases"].get(alias)
        found = resolve_alias(settings, alias)
        if wanted is None and found is not None:
            mlflow.delete_registered_model_alias(settings.model_name, alias)
        elif wanted is not None and (found is None or found[0] != wanted):
            set_alias(settings, alias, wanted)
            log(f"alias {alias} → v{wanted}")


def restore(settings: Settings, log: Callable[[str], None] = print) -> None:
    """Put the stack back to the snapshot and start it; raises when there is no snapshot."""
    from fraudlab import releases, stack

    snapshot = root(settings)
    if not exists(settings):
        raise FileNotFoundError(f"no baseline snapshot in {snapshot}")
    manifest = json.loads((snapshot / MANIFEST).read_text())
    for component in ("traffic", "serving"):
        message = stack._stop(settings, component)
        if message:
            log(message)
    for name, live in _directories(settings).items():
        shutil.rmtree(live, ignore_errors=True)
        if (snapshot / name).exists():
            shutil.copytree(snapshot / name, live)
    for path in (settings.feast_registry, settings.feast_online_path):
        for stale in (
            path,
            path.with_name(path.name + "-wal"),
            path.with_name(path.name + "-shm"),
        ):
            stale.unlink(missing_ok=True)
        saved = snapshot / "feast" / path.name
        if saved.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(saved, path)
    # (a snapshot from before schedules were kept only knew about the overrides file)
    saved = manifest.get("home_files", [OVERRIDES_FILE] if manifest.get("overrides") else [])
    for name in HOME_FILES:
        path = settings.home.resolve() / name
        if name in saved:
            shutil.copy2(snapshot / name, path)
        else:
            path.unlink(missing_ok=True)
    # this process read the overrides before they were put back: read them again
    settings = settings.reloaded()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    moved = _archive_new_predictions(settings, manifest["prediction_log"], stamp)
    if moved:
        log(f"archived {moved:,} bytes of prediction records written since the baseline")
    _restore_registry(settings, manifest["registry"], log)
    if manifest["release"]:
        releases.set_current(
            settings, releases.read(releases.releases_dir(settings) / manifest["release"])
        )
    if not stack._start_serving(settings):
        raise RuntimeError("serving did not come back after restoring the baseline")
    if stack._asked_for(settings, "traffic", True) and not stack._start_traffic(settings):
        raise RuntimeError("the traffic simulator did not come back after restoring the baseline")
