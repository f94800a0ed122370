"""The healthy baseline an incident breaks and ``reset`` returns to.

Owns: the snapshot of the stack's mutable state taken when an incident is injected into a
healthy stack, and restoring it. The snapshot (``baseline/`` in the lab directory, neutral
names) holds:

- the data the stack lives on: raw tables, clock, traffic replay state, label feed, offline
  feature tables, the Feast registry and online store — embedded: the registry file and the
  SQLite online store (copied with its backup API so a serving process reading it meanwhile
  does not matter); containerised: every row of the registry's PostgreSQL database and every
  key of the Redis online store (DUMP/RESTORE), pushed real-time features included, which a
  re-materialisation from the offline tables would lose;
- the model registry's aliases and the highest registered version;
- the serving release, the stack's live overrides (``<home>/overrides.env``) and its
  schedules' pause states (``<home>/schedules.json``);
- the size of each prediction-log file.

Restoring stops traffic and serving, puts every file back, moves prediction records written
since the snapshot into ``<home>/predictions/archive/<UTC stamp>/`` (nothing is lost, and the
monitors judge the baseline's traffic again), deletes model versions registered since, points
the aliases back, and starts serving (and traffic, if the stack runs it) on the baseline
release. Whatever a scenario or a candidate changed in those places — a half-finished fix
included — is undone; the working tree of the repository is not touched. Containerised, the
lab runner does this from inside the stack: the home volume is mounted, the servers are reached
at their service addresses, and serving and traffic are stopped and started as containers
(``control.containers``).

Must not: know any scenario, or touch PostgreSQL databases other than Feast's registry.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from foundation.settings import OVERRIDES_FILE, Settings

ALIASES = ("champion", "previous_champion", "challenger")
MANIFEST = "baseline.json"
# Small state files at the top of the home, restored as they were (absent stays absent).
HOME_FILES = (OVERRIDES_FILE, "schedules.json")


def root(settings: Settings) -> Path:
    return settings.lab_state_dir / "baseline"


def _directories(settings: Settings) -> dict[str, Path]:
    """Directories restored as a whole (name in the snapshot → live path)."""
    return {
        "data": settings.data_dir,
        "labels": settings.label_dir,
        "features": settings.feature_data_dir,
    }


def _containerised(settings: Settings) -> bool:
    return settings.stack == "compose"


def _copy_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite database that another process may be writing."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


def _registry_state(settings: Settings) -> dict[str, Any]:
    from model.registry import client, resolve_alias

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


# --- the feature store's servers (containerised) ---------------------------------------------

REGISTRY_ROWS = "registry.rows"
ONLINE_KEYS = "online.keys"


def _redis(settings: Settings):
    """A client of the online store's Redis (``FRAUDLAB_FEAST_REDIS``: host:port,opt=value…)."""
    import redis

    address, *options = (settings.feast_redis or "").split(",")
    host, _, port = address.rpartition(":")
    opts = dict(option.split("=", 1) for option in options if "=" in option)
    return redis.Redis(
        host=host or "localhost",
        port=int(port or 6379),
        password=opts.get("password"),
        db=int(opts.get("db", 0)),
        socket_timeout=60,
    )


def _dump_online(settings: Settings, target: Path) -> int:
    """Every key of the online store with its TTL and serialised value; the key count."""
    import pickle

    client = _redis(settings)
    keys = list(client.scan_iter(count=1000))
    entries = []
    for start in range(0, len(keys), 1000):
        chunk = keys[start : start + 1000]
        pipe = client.pipeline(transaction=False)
        for key in chunk:
            pipe.pttl(key)
            pipe.dump(key)
        answers = pipe.execute()
        for i, key in enumerate(chunk):
            ttl, value = answers[2 * i], answers[2 * i + 1]
            if value is not None:  # expired between SCAN and DUMP
                entries.append((key, max(int(ttl), 0), value))
    target.write_bytes(pickle.dumps(entries))
    return len(entries)


def _restore_online(settings: Settings, source: Path) -> int:
    import pickle

    # pickle: the lab wrote it, into the lab directory, which no candidate-facing container mounts
    entries = pickle.loads(source.read_bytes())
    client = _redis(settings)
    client.flushdb()
    for start in range(0, len(entries), 1000):
        pipe = client.pipeline(transaction=False)
        for key, ttl, value in entries[start : start + 1000]:
            pipe.restore(key, ttl, value, replace=True)
        pipe.execute()
    return len(entries)


def _registry_engine(settings: Settings):
    from sqlalchemy import create_engine

    return create_engine(settings.feast_registry_url or "")


def _dump_registry(settings: Settings, target: Path) -> int:
    """Every row of every table of Feast's SQL registry (its database holds nothing else)."""
    import pickle

    from sqlalchemy import MetaData

    engine = _registry_engine(settings)
    try:
        metadata = MetaData()
        metadata.reflect(engine)
        with engine.connect() as conn:
            rows = {
                table.name: [tuple(row) for row in conn.execute(table.select())]
                for table in metadata.sorted_tables
            }
    finally:
        engine.dispose()
    target.write_bytes(pickle.dumps(rows))
    return sum(len(r) for r in rows.values())


def _restore_registry_rows(settings: Settings, source: Path) -> int:
    """The registry's rows as they were, in one transaction (readers see old or new)."""
    import pickle

    from sqlalchemy import MetaData

    saved = pickle.loads(source.read_bytes())  # written by the lab (see _restore_online)
    engine = _registry_engine(settings)
    try:
        metadata = MetaData()
        metadata.reflect(engine)
        with engine.begin() as conn:
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())
            for table in metadata.sorted_tables:
                rows = saved.get(table.name, [])
                if rows:
                    names = [column.name for column in table.columns]
                    conn.execute(table.insert(), [dict(zip(names, row)) for row in rows])
    finally:
        engine.dispose()
    return sum(len(r) for r in saved.values())


def _snapshot_feast(settings: Settings, target: Path) -> None:
    target.mkdir()
    if settings.feast_registry_url:
        _dump_registry(settings, target / REGISTRY_ROWS)
    elif settings.feast_registry.exists():
        shutil.copy2(settings.feast_registry, target / settings.feast_registry.name)
    if settings.feast_redis:
        _dump_online(settings, target / ONLINE_KEYS)
    elif settings.feast_online_path.exists():
        _copy_sqlite(settings.feast_online_path, target / settings.feast_online_path.name)


def _restore_feast(settings: Settings, source: Path, log: Callable[[str], None]) -> None:
    if settings.feast_registry_url and (source / REGISTRY_ROWS).exists():
        rows = _restore_registry_rows(settings, source / REGISTRY_ROWS)
        log(f"feature registry: {rows} rows restored")
    if settings.feast_redis and (source / ONLINE_KEYS).exists():
        keys = _restore_online(settings, source / ONLINE_KEYS)
        log(f"online store: {keys} keys restored")
    files = [] if settings.feast_registry_url else [settings.feast_registry]
    files += [] if settings.feast_redis else [settings.feast_online_path]
    for path in files:
        for stale in (
            path,
            path.with_name(path.name + "-wal"),
            path.with_name(path.name + "-shm"),
        ):
            stale.unlink(missing_ok=True)
        saved = source / path.name
        if saved.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(saved, path)


# --- serving and traffic ----------------------------------------------------------------------


def _stop_serving_and_traffic(settings: Settings, log: Callable[[str], None]) -> bool:
    """Stop traffic, then serving; True when traffic was running (containerised)."""
    if _containerised(settings):
        from control import containers

        was = containers.stop(settings, "traffic")
        containers.stop(settings, "serving")
        log(f"stopped the serving{' and traffic' if was else ''} container(s)")
        return was
    from control import stack

    for component in ("traffic", "serving"):
        message = stack._stop(settings, component)
        if message:
            log(message)
    return False


def _start_serving_and_traffic(settings: Settings, traffic: bool) -> None:
    """Embedded: serving, then the simulator (containerised: see ``restore``)."""
    from control import stack

    if not stack._start_serving(settings):
        raise RuntimeError("serving did not come back after restoring the baseline")
    if stack._asked_for(settings, "traffic", True) and not stack._start_traffic(settings):
        raise RuntimeError("the traffic simulator did not come back after restoring the baseline")


def _wait_serving_champion(
    settings: Settings, version: str | None, timeout_s: float = 90.0
) -> None:
    """Until serving answers with the model version ``version`` (None: nothing to wait for)."""
    import time

    from control.stack import served_model_version

    deadline = time.monotonic() + timeout_s
    while version is not None and served_model_version(settings) != str(version):
        if time.monotonic() > deadline:
            raise RuntimeError(f"serving did not load the baseline's champion v{version}")
        time.sleep(1.0)


def exists(settings: Settings) -> bool:
    return (root(settings) / MANIFEST).exists()


def take(settings: Settings) -> dict[str, Any]:
    """Snapshot the stack as it is now (call it on a healthy stack); returns the manifest."""
    from control import releases

    if not _containerised(settings) and (settings.mlflow_tracking_uri or settings.serving_url):
        raise RuntimeError(
            "the baseline snapshot covers this stack's own processes (MLflow or serving is"
            " external: run the lab where the stack runs)"
        )
    target = root(settings)
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name, live in _directories(settings).items():
        if live.exists():
            shutil.copytree(live, staging / name)
    _snapshot_feast(settings, staging / "feast")
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
        "traffic_running": _traffic_running(settings),
        "prediction_log": {p.name: p.stat().st_size for p in _request_logs(settings)},
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return manifest


def _traffic_running(settings: Settings) -> bool:
    if _containerised(settings):
        from control import containers

        return containers.traffic_running(settings)
    from control import stack

    return stack.running(settings, "traffic") is not None


def _request_logs(settings: Settings) -> list[Path]:
    """The request logs serving writes: predictions, and the rejections logged beside them."""
    directory = settings.prediction_log_dir
    return sorted([*directory.glob("predictions-*.jsonl"), *directory.glob("rejections-*.jsonl")])


def _archive_new_predictions(settings: Settings, sizes: dict[str, int], stamp: str) -> int:
    """Move prediction (and rejection) records written since the snapshot into the archive;
    bytes moved."""
    archive = settings.prediction_log_dir / "archive" / stamp
    moved = 0
    for path in _request_logs(settings):
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
    from model.registry import client, resolve_alias, set_alias

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
    from control import releases

    snapshot = root(settings)
    if not exists(settings):
        raise FileNotFoundError(f"no baseline snapshot in {snapshot}")
    manifest = json.loads((snapshot / MANIFEST).read_text())
    traffic_was = _stop_serving_and_traffic(settings, log)
    for name, live in _directories(settings).items():
        shutil.rmtree(live, ignore_errors=True)
        if (snapshot / name).exists():
            shutil.copytree(snapshot / name, live)
    _restore_feast(settings, snapshot / "feast", log)
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
    if manifest["release"]:
        releases.set_current(
            settings, releases.read(releases.releases_dir(settings) / manifest["release"])
        )
    elif _containerised(settings):
        releases.clear_current(settings)  # the baseline served the image's code
    traffic = bool(manifest.get("traffic_running")) or traffic_was
    if _containerised(settings):
        # The serving container takes ~20 s to load; the registry is put back meanwhile, and
        # serving then follows the champion alias to the baseline's model (it reloads when the
        # alias moves), which is waited for.
        from control import containers

        containers.Engine(settings).start("serving")
        _restore_registry(settings, manifest["registry"], log)
        containers.wait_serving_ready(settings)
        _wait_serving_champion(settings, manifest["registry"]["aliases"].get("champion"))
        if traffic:
            containers.start_traffic(settings)
        return
    _restore_registry(settings, manifest["registry"], log)
    _start_serving_and_traffic(settings, traffic)
