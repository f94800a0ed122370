"""Opening the Feast feature store, applying its definitions, materialising it.

Owns: the one way any fraudlab process gets a ``FeatureStore`` (configured from the settings
object through ``feature_store.yaml``'s ``${VAR}`` expansion) and the materialisation step.
Must not: define features (``features.definitions``) or transform them (``features.transforms``).
"""

from __future__ import annotations

import json
import os
import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from foundation.settings import Settings, get_settings

if TYPE_CHECKING:
    from feast import FeatureStore

FEATURE_REPO = Path(__file__).resolve().parent


# A SQL registry is refreshed by a background thread this often: the request path never waits
# for PostgreSQL (nor fails while it is down), and another process's `apply` shows within this
# delay. A file registry is re-read when the file changes, on the spot (cache TTL 0 = no expiry).
SQL_REGISTRY_REFRESH_S = 10


def feast_environment(settings: Settings, wait_s: float | None = None) -> dict[str, str]:
    """The variables ``feature_store.yaml`` expands, rendered from the settings.

    Redis connections get a socket timeout and no retries: redis-py's default (3 retries with
    exponential backoff) would hold a request for seconds while Redis is down, where serving's
    fallback should answer at once (``serving.online_features``). A shorter ``wait_s``
    replaces that timeout (``open_store``).
    """
    if settings.feast_registry_url:
        registry = {"TYPE": "sql", "PATH": settings.feast_registry_url}
        registry |= {"CACHE_MODE": "thread", "CACHE_TTL": str(SQL_REGISTRY_REFRESH_S)}
    else:
        registry = {"TYPE": "file", "PATH": str(settings.feast_registry)}
        registry |= {"CACHE_MODE": "sync", "CACHE_TTL": "0"}
    if settings.feast_redis:
        # Feast's format: host:port,key=value,... (values parsed as JSON: null is None). Ours
        # come before the configured options, so FRAUDLAB_FEAST_REDIS can override them.
        address, *options = settings.feast_redis.split(",")
        timeout = min(settings.redis_timeout_s, wait_s or settings.redis_timeout_s)
        ours = [f"socket_timeout={timeout}", f"socket_connect_timeout={timeout}", "retry=null"]
        online = {"type": "redis", "connection_string": ",".join([address, *ours, *options])}
    else:
        online = {"type": "sqlite", "path": str(settings.feast_online_path)}
    return {
        **{f"FRAUDLAB_FEAST_REGISTRY_{key}": value for key, value in registry.items()},
        # JSON is a YAML flow mapping, quoted safely whatever the path or password holds.
        "FRAUDLAB_FEAST_ONLINE_STORE": json.dumps(online),
    }


def open_store(settings: Settings | None = None, wait_s: float | None = None) -> FeatureStore:
    """A FeatureStore for this environment (about two seconds: Feast's import dominates).

    ``wait_s`` bounds how long one online-store call may wait on something other than its own
    work: on SQLite, a lock another connection holds (the busy timeout, 5 s by Python's
    default); on Redis, a server that does not answer (the socket timeout). Serving's request
    path passes its lookup budget, so a store that cannot answer in time raises at once instead
    of holding the request; batch jobs (materialisation, training) keep the patient defaults.
    """
    settings = settings or get_settings()
    for key, value in feast_environment(settings, wait_s).items():
        os.environ[key] = value  # the settings object is the truth, not a stale variable
    settings.feast_registry.parent.mkdir(parents=True, exist_ok=True)
    from feast import FeatureStore

    _quiet_ibis()
    store = FeatureStore(repo_path=str(FEATURE_REPO))
    if wait_s is not None:
        _bound_lock_waits(store, wait_s)
    return store


def _bound_lock_waits(store: FeatureStore, wait_s: float) -> None:
    """SQLite online store: wait at most ``wait_s`` for another connection's lock.

    Feast opens its one SQLite connection lazily, with Python's default busy timeout (5 s), and
    has no setting for it: the connection is opened here and given the bound. WAL mode
    (``materialize``) already spares readers any wait on a writer; the bound covers a file in
    rollback-journal mode (one Feast's own CLI created, say) and anything else that locks it.
    """
    if getattr(store.config.online_store, "type", None) != "sqlite":
        return
    # Feast's private API (0.67): the provider's online store and its one shared connection.
    connection = store._get_provider().online_store._get_conn(store.config)
    connection.execute(f"PRAGMA busy_timeout = {max(1, round(wait_s * 1000))}")


def _quiet_ibis() -> None:
    """Ignore the DeprecationWarnings ibis raises (and only those).

    ibis, under Feast's DuckDB offline store, calls a DuckDB method DuckDB now deprecates: once
    per view and materialisation, nothing a fraudlab user can act on. Added after Feast is
    imported, because Feast's import puts a filter showing every DeprecationWarning ("once") in
    front of the ones before it; the filter added last is the one that counts.
    """
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ibis\.")


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class _PlainText:
    """A text stream that writes to ``stream`` without ANSI escape sequences."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(ANSI_ESCAPE.sub("", text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


@contextmanager
def _colour_only_on_a_terminal() -> Iterator[None]:
    """Feast colours its materialisation lines with raw ANSI codes whatever stdout is: in a log
    (the simulator's, an Airflow task's, any captured output) they are escape sequences a
    person reads around. Off a terminal they are stripped."""
    stream = sys.stdout
    isatty = getattr(stream, "isatty", None)
    if stream is None or (callable(isatty) and isatty()):
        yield
        return
    with redirect_stdout(_PlainText(stream)):  # type: ignore[type-var]
        yield


def reset(settings: Settings) -> bool:
    """Tear the feature store down (online tables, registered objects and their
    materialisation history) when the data it was built from is replaced; True if there was
    one. ``apply_definitions`` and ``materialize`` then build it anew from the new tables.

    Incremental materialisation only loads what lies after the last materialised interval, so a
    regenerated world (or rebuilt tables) would otherwise be served the old values for ever.
    """
    if not settings.feast_registry_url and not settings.feast_registry.exists():
        return False  # a file registry that was never written: nothing to tear down
    store = open_store(settings)
    if not store.list_feature_views():
        return False
    store.teardown()
    return True


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
    with _colour_only_on_a_terminal():
        if batch:
            store.materialize_incremental(end_date=end, feature_views=batch)
        if ahead:
            store.materialize_incremental(
                end_date=end + CREATED_WITH_ENTITY_LEAD, feature_views=ahead
            )


if __name__ == "__main__":
    # `eval "$(python -m features.store)"`: the variables feature_store.yaml expands, exported
    # for a shell, so that Feast's own CLI works too (`feast -c features feature-views list`).
    import shlex

    for key, value in feast_environment(get_settings()).items():
        print(f"export {key}={shlex.quote(value)}")
