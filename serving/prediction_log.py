"""After the response: the prediction log and the velocity push, on one background thread.

Owns: the prediction log files (``<prediction_log_dir>/predictions-YYYY-MM-DD.jsonl``, one per
UTC day of logging, one JSON object per line), the rejection log beside it
(``rejections-YYYY-MM-DD.jsonl``: requests refused with a 4xx, e.g. an unknown user) and pushing each scored user's new velocity state
to the Feast push source ``user_velocity_push``.
Must not: score, or compute the velocity update itself (``features.transforms.velocity_update``
does, for the offline backfill and serving alike).

The request path only enqueues; this thread serialises, writes and pushes. The log is flushed
to the OS at least every ``FLUSH_INTERVAL_S`` and fsynced on ``close()``, which the service
calls on shutdown, so a clean stop (SIGTERM or SIGINT) loses no record. The thread has its own
``FeatureStore``, so its writes never share a SQLite connection with request-path reads.

Pushes are batched in time: one write every ``PUSH_INTERVAL_S`` at most, because a Feast push
costs milliseconds of Python that hold the GIL the request path needs. Batching must not make
the velocity features stale, or a burst (card testing) would be scored as a single purchase and
serving would disagree with the offline backfill. So the new state is computed on the request
path when a transaction is submitted (``features.transforms.velocity_update``, ~30 µs) and kept
in memory until it has surely reached the store; ``fresh_velocity`` lays it over what the store
returned for the next request of the same user. Read-your-writes, with one update function.

A line is one ``model.record.PredictionRecord`` as JSON (its schema, version and columns live
there, shared with every reader).
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np

from features.transforms import velocity_available_at, velocity_update
from foundation.settings import Settings
from model.record import PredictionRecord, RejectionRecord
from serving.metrics import serving_metrics
from serving.model import RateLimitedWarning

log = logging.getLogger("fraudlab.serving")

PUSH_SOURCE = "user_velocity_push"
FLUSH_INTERVAL_S = 0.1
PUSH_INTERVAL_S = 1.0
MAX_BATCH = 512
# How long the thread remembers a user's pushed state; far longer than a push takes to land.
RECENT_STATE_S = 60.0


@dataclass(frozen=True)
class VelocityPush:
    """One scored transaction's input to the velocity state: the state served, and the event."""

    user_id: int
    event_ts: float
    amount: float
    last_txn_ts: float | None
    velocity_1h: float | None
    small_velocity_1h: float | None


VELOCITY_FIELDS = ("last_txn_ts", "velocity_1h", "small_velocity_1h")


def _json_safe(value: object) -> object:
    """NaN and infinity become None: JSON has no such numbers, and a record must not be lost."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, float | np.floating) and not math.isfinite(value):
        return None
    return value


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


PREDICTIONS = "predictions"
REJECTIONS = "rejections"
LogRecord = PredictionRecord | RejectionRecord


class _DailyLog:
    """One family of log files, ``<prefix>-YYYY-MM-DD.jsonl`` (UTC day of logging)."""

    def __init__(self, directory: Path, prefix: str) -> None:
        self.directory = directory
        self.prefix = prefix
        self._file: IO[str] | None = None
        self._day: str | None = None

    def write(self, lines: list[str]) -> None:
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        if day != self._day or self._file is None:
            self.close()
            self._file = (self.directory / f"{self.prefix}-{day}.jsonl").open(
                "a", encoding="utf-8"
            )
            self._day = day
        self._file.write("\n".join(lines) + "\n")

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None


class PredictionSink:
    """A queue and the one thread that drains it into the log and the feature store."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.directory = Path(settings.prediction_log_dir)
        self.directory.mkdir(parents=True, exist_ok=True)
        # A deque, not a Queue: appending never wakes this thread, so a request costs no GIL
        # hand-over; the thread wakes on its own every FLUSH_INTERVAL_S and takes everything.
        self._queue: deque[tuple[LogRecord, Any]] = deque()
        self._stop = threading.Event()
        self._logs = {
            PredictionRecord: _DailyLog(self.directory, PREDICTIONS),
            RejectionRecord: _DailyLog(self.directory, REJECTIONS),
        }
        self._store: Any = None
        self._push_warn = RateLimitedWarning()
        # user → (state after the user's latest scored transaction, monotonic time computed)
        self._latest: dict[int, tuple[tuple[float, float, float], float]] = {}
        self._latest_lock = threading.Lock()
        self._pending: list[tuple[int, tuple[float, float, float]]] = []
        self._closed = False
        self._metrics = serving_metrics()
        self._thread = threading.Thread(target=self._run, name="prediction-sink", daemon=True)
        self._thread.start()

    # --- request path -----------------------------------------------------------------
    def submit_rejection(self, record: RejectionRecord) -> None:
        """Hand over a refused request (answered 4xx): logged beside the predictions."""
        self._queue.append((record, None))

    def submit(self, record: PredictionRecord, push: VelocityPush | None) -> None:
        """Hand over a scored request; never blocks. Updates the user's velocity state now."""
        state = self._advance(push) if push is not None else None
        self._queue.append((record, state))

    def fresh_velocity(self, user_id: int, served: dict[str, Any]) -> dict[str, Any]:
        """``served`` with the velocity state of a transaction not yet pushed laid over it."""
        mine = self._latest.get(user_id)
        if mine is None:
            return served
        state = mine[0]
        if served.get("last_txn_ts") is not None and served["last_txn_ts"] >= state[0]:
            return served  # the store already has this state (or a newer one)
        return {**served, **dict(zip(VELOCITY_FIELDS, state, strict=True))}

    def _advance(self, push: VelocityPush) -> tuple[int, tuple[float, float, float]]:
        new = velocity_update(
            [push.last_txn_ts],
            [push.velocity_1h],
            [push.small_velocity_1h],
            [push.event_ts],
            [push.amount],
        )
        state = (
            float(new["last_txn_ts"][0]),
            float(new["velocity_1h"][0]),
            float(new["small_velocity_1h"][0]),
        )
        with self._latest_lock:
            self._latest[push.user_id] = (state, time.monotonic())
        return push.user_id, state

    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self, timeout_s: float = 10.0) -> None:
        """Drain everything queued, flush and fsync the log (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.error("prediction log writer did not finish within %.0fs", timeout_s)

    # --- the background thread ---------------------------------------------------------
    def _run(self) -> None:
        last_push = time.monotonic()
        stopping = False
        while not stopping:
            stopping = self._stop.wait(FLUSH_INTERVAL_S)
            try:
                while self._queue:
                    batch = [
                        self._queue.popleft() for _ in range(min(len(self._queue), MAX_BATCH))
                    ]
                    self._write([record for record, _ in batch])
                    self._pending.extend(state for _, state in batch if state is not None)
                for daily in self._logs.values():
                    daily.flush()
                if self._pending and (
                    stopping
                    or time.monotonic() - last_push >= PUSH_INTERVAL_S
                    or len(self._pending) >= MAX_BATCH
                ):
                    pending, self._pending = self._pending, []
                    self._push(pending)
                    last_push = time.monotonic()
            except Exception:  # the thread must outlive any single bad batch
                log.exception("prediction sink failed on a batch; continuing")
        for daily in self._logs.values():
            daily.close()

    def _write(self, records: list[LogRecord]) -> None:
        lines: dict[type, list[str]] = {kind: [] for kind in self._logs}
        for record in records:
            try:
                lines[type(record)].append(
                    json.dumps(
                        _json_safe(record.to_json()), default=_json_default, allow_nan=False
                    )
                )
            except (TypeError, ValueError) as exc:
                self._metrics.log_records.labels(outcome="error").inc()
                log.error(
                    "dropped an unserialisable %s %s: %s",
                    type(record).__name__,
                    record.request_id,
                    exc,
                )
        for kind, written in lines.items():
            if written:
                self._logs[kind].write(written)
                if kind is PredictionRecord:
                    self._metrics.log_records.labels(outcome="written").inc(len(written))

    def _forget_pushed(self) -> None:
        """Drop in-memory states old enough to be in the store (pushed many intervals ago)."""
        cutoff = time.monotonic() - RECENT_STATE_S
        with self._latest_lock:
            stale = [u for u, (_, at) in self._latest.items() if at < cutoff]
            for user in stale:
                del self._latest[user]

    def _push(self, states: list[tuple[int, tuple[float, float, float]]]) -> None:
        import pandas as pd
        from feast.data_source import PushMode

        self._forget_pushed()
        # only each user's newest state matters to the online store
        newest: dict[int, tuple[float, float, float]] = {}
        for user, state in states:
            if user not in newest or state[0] >= newest[user][0]:
                newest[user] = state
        users = list(newest)
        columns = {name: [newest[u][i] for u in users] for i, name in enumerate(VELOCITY_FIELDS)}
        frame = pd.DataFrame(
            {
                "user_id": np.array(users, dtype=np.int64),
                # Same convention as the offline table: the state becomes visible a millisecond
                # after its transaction, so a point-in-time join sees the state before it.
                "event_timestamp": velocity_available_at(
                    pd.to_datetime(columns["last_txn_ts"], unit="s", utc=True)
                ),
                **columns,
            }
        )
        try:
            if self._store is None:
                from features.store import open_store

                self._store = open_store(self.settings)
            self._store.push(PUSH_SOURCE, frame, to=PushMode.ONLINE)
        except Exception as exc:  # noqa: BLE001 - a failed push must not stop logging
            self._metrics.pushes.labels(outcome="error").inc(len(frame))
            self._push_warn.failure(
                "velocity push of %d rows failed: %s: %s", len(frame), type(exc).__name__, exc
            )
            return
        self._metrics.pushes.labels(outcome="pushed").inc(len(frame))
        self._push_warn.recovered("velocity pushes succeed again")
