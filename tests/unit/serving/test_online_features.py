"""The feature lookup's budget holds whatever the store does: errors and hangs fall back with a
reason, a misbehaving store never holds the event loop, and stuck reads cannot starve the pool."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import pytest

from serving import online_features
from tests.conftest import small_settings

BUDGET_MS = 25.0
ENTITY = {"user_id": 1, "merchant_id": 2, "device_id": 3}


class FakeStore:
    """Answers, raises or hangs (until released) as the test says; records the reading thread."""

    def __init__(self) -> None:
        self.mode = "answer"
        self.release = threading.Event()
        self.threads: list[str] = []

    def get_feature_service(self, name: str) -> str:
        return name

    def get_online_features(self, features, entity_rows):
        self.threads.append(threading.current_thread().name)
        if self.mode == "raise":
            raise sqlite3.OperationalError("database is locked")
        if self.mode == "hang":
            self.release.wait(10)
        return _Response({"velocity_1h": [2.0]})


class _Response:
    def __init__(self, columns: dict) -> None:
        self.columns = columns

    def to_dict(self) -> dict:
        return self.columns


@pytest.fixture
def lookups(tmp_path, monkeypatch):
    store = FakeStore()
    opened: list[float | None] = []

    def fake_open(settings, wait_s=None):
        opened.append(wait_s)
        return store

    monkeypatch.setattr(online_features, "open_store", fake_open)
    features = online_features.OnlineFeatures(
        small_settings(tmp_path, feature_timeout_ms=BUDGET_MS)
    )
    assert opened == [BUDGET_MS / 1000]  # the store itself is bounded by the budget
    yield features, store
    store.release.set()
    features.close()


async def _lookup_with_loop_ticks(features, n: int = 1):
    """Lookups in sequence while a ticker measures the longest time the loop was held."""
    longest = 0.0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            longest = max(longest, now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.005)
    results = []
    for _ in range(n):
        started = time.perf_counter()
        found = await features.lookup("svc", ENTITY)
        results.append((found, time.perf_counter() - started))
    stop.set()
    await task
    return results, longest


def test_a_healthy_store_answers_inline(lookups) -> None:
    features, store = lookups
    [(found, _)], _ = asyncio.run(_lookup_with_loop_ticks(features))
    assert found.values == {"velocity_1h": 2.0} and found.fallback_reason is None
    assert not store.threads[-1].startswith("feature-lookup")  # no thread hop when healthy


def test_an_error_falls_back_and_guards_the_next_reads(lookups) -> None:
    features, store = lookups
    store.mode = "raise"
    [(found, _)], _ = asyncio.run(_lookup_with_loop_ticks(features))
    assert found.values is None and found.fallback_reason == "error:OperationalError"

    # The store now hangs: the next reads must not run on the event loop (they did before an
    # error tripped the guard, and a locked SQLite held the loop for its 5 s busy timeout).
    store.mode = "hang"
    results, longest = asyncio.run(_lookup_with_loop_ticks(features, n=5))
    for found, seconds in results:
        assert found.values is None and found.fallback_reason == "timeout"
        assert seconds < (BUDGET_MS + 50) / 1000
    assert longest < 0.05, f"the event loop was held {longest * 1000:.0f} ms"
    assert all(name.startswith("feature-lookup") for name in store.threads[1:])


def test_stuck_reads_cannot_starve_the_pool(lookups) -> None:
    """Both pool threads held by reads that never return: every later lookup still falls back
    within the budget, and the queued reads are cancelled instead of piling up."""
    features, store = lookups
    store.mode = "hang"
    features._trip_guard()
    results, longest = asyncio.run(_lookup_with_loop_ticks(features, n=20))
    assert [f.fallback_reason for f, _ in results] == ["timeout"] * 20
    assert max(seconds for _, seconds in results) < (BUDGET_MS + 50) / 1000
    assert longest < 0.05
    assert len(store.threads) == 2  # only the two stuck reads ever started

    store.mode = "answer"
    store.release.set()  # the store recovers: the queued, cancelled reads never run
    time.sleep(0.05)
    [(found, _)], _ = asyncio.run(_lookup_with_loop_ticks(features))
    assert found.values == {"velocity_1h": 2.0}
    assert len(store.threads) == 3


def test_a_slow_answer_trips_the_guard(lookups, monkeypatch) -> None:
    features, store = lookups
    slow = store.get_online_features

    def slow_read(features, entity_rows):
        time.sleep(BUDGET_MS / 1000 * 2)
        return slow(features, entity_rows)

    monkeypatch.setattr(store, "get_online_features", slow_read)
    [(found, _)], _ = asyncio.run(_lookup_with_loop_ticks(features))
    assert found.values is not None  # a slow answer is still used once ...
    assert features._guard_until > time.perf_counter()  # ... then reads run under the deadline


def test_a_store_that_cannot_answer_at_start_up_does_not_stop_serving(lookups) -> None:
    features, store = lookups
    store.mode = "raise"
    features.warm_up("svc")  # logs, does not raise
    assert features._guard_until > time.perf_counter()


@pytest.mark.slow
def test_sqlite_reads_wait_on_a_lock_no_longer_than_the_budget(tmp_path) -> None:
    """The real store: another connection holds SQLite's exclusive lock (rollback journal, where
    readers must wait). Python's default busy timeout waited 5 s; the bounded store gives up
    within about the budget."""
    from features.store import open_store

    settings = small_settings(tmp_path)
    store = open_store(settings, wait_s=BUDGET_MS / 1000)
    connection = store._get_provider().online_store._get_conn(store.config)
    assert connection.execute("PRAGMA busy_timeout").fetchone()[0] == round(BUDGET_MS)

    holder = sqlite3.connect(settings.feast_online_path, isolation_level=None)
    holder.execute("CREATE TABLE IF NOT EXISTS t (a)")
    holder.execute("PRAGMA journal_mode=DELETE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.perf_counter()
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            connection.execute("SELECT count(*) FROM t").fetchall()
        assert time.perf_counter() - started < 0.5
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    # batch jobs keep the patient default
    patient = open_store(settings)
    conn = patient._get_provider().online_store._get_conn(patient.config)
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
