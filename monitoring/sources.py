"""What the monitors read: the prediction log window, the champion bundle, the run folders.

Owns: reading the newest records of the prediction log (newest file first, each file from its
end, so a window costs what it holds, not what the log holds), finding the champion bundle the
monitors judge against, and the layout of ``<home>/monitoring/``.
Must not: write the prediction log (``serving.prediction_log``), load models any other way than
``model.registry``, or judge anything (``monitoring.drift``, ``monitoring.skew``).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from foundation.settings import Settings
from model import registry
from model.record import PredictionRecord, RejectionRecord

log = logging.getLogger("fraudlab.monitoring")

BLOCK_BYTES = 1 << 20
OUT_OF_ORDER_S = 3600.0  # how far back in event time a window read looks past its start
WORKSPACE_DIR = "workspace"
MODEL_CACHE_DIR = "model-cache"


def _reverse_lines(path: Path) -> Iterator[bytes]:
    """The lines of ``path``, last first, read in blocks from the end."""
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        position = handle.tell()
        tail = b""
        while position > 0:
            step = min(BLOCK_BYTES, position)
            position -= step
            handle.seek(position)
            lines = (handle.read(step) + tail).split(b"\n")
            tail = lines[0]  # may be the end of a line that starts in an earlier block
            yield from reversed(lines[1:])
        yield tail


_ANY = object()


def _lines_newest_first(log_dir: Path, family: str) -> Iterator[tuple[Path, dict]]:
    """Each JSON object of ``<family>-*.jsonl``, newest file first, each file from its end; a
    line cut short by a writer mid-flush is skipped."""
    for path in sorted(log_dir.glob(f"{family}-*.jsonl"), reverse=True):
        for line in _reverse_lines(path):
            if not line.strip():
                continue
            try:
                yield path, json.loads(line)
            except json.JSONDecodeError:
                continue


def _newest_first(
    log_dir: Path,
    *,
    include_fallback: bool,
    include_synthetic: bool,
    current_release_only: bool = False,
) -> Iterator[PredictionRecord]:
    """Production records of the log, newest first (see ``read_recent`` for what is left out).

    ``current_release_only``: stop at the first record (newest first) scored by another serving
    release than the newest record of the log, of any kind, was: what the code serving now
    scored, and nothing an earlier release left behind.
    """
    current: object = _ANY
    for path, data in _lines_newest_first(log_dir, "predictions"):
        record = PredictionRecord.from_json(data, where=f"a record of {path}")
        if current_release_only:
            if current is _ANY:
                current = record.release
            elif record.release != current:
                return
        if not include_fallback and record.fallback:
            continue
        if not include_synthetic and record.synthetic:
            continue
        yield record


def read_recent(
    log_dir: Path,
    limit: int,
    *,
    include_fallback: bool = False,
    include_synthetic: bool = False,
    current_release_only: bool = False,
) -> list[PredictionRecord]:
    """The newest ``limit`` prediction records, oldest first; fallback and synthetic left out
    (and, with ``current_release_only``, what earlier serving releases scored).

    A fallback score was made without the stored features, so it says nothing about their
    distribution or about skew. Synthetic requests (load tests, probes) replay transactions out
    of order and at rates no customer produces: they are not production traffic. A line cut
    short by a writer mid-flush is skipped.
    """
    records: list[PredictionRecord] = []
    for record in _newest_first(
        log_dir,
        include_fallback=include_fallback,
        include_synthetic=include_synthetic,
        current_release_only=current_release_only,
    ):
        if len(records) >= limit:
            break
        records.append(record)
    return records[::-1]


def _event_window(
    records: Iterable[PredictionRecord], hours: float, max_records: int
) -> tuple[list[PredictionRecord], list[PredictionRecord]]:
    """(production records whose event time lies within ``hours`` of the newest production
    record, oldest first by event time; the synthetic records read on the way, newest first).

    ``records`` come newest first. The log is written in roughly event order; concurrent clients
    interleave it by up to minutes of event time, so reading goes on until a production record is
    ``OUT_OF_ORDER_S`` older than the window's start. ``max_records`` bounds what is read.
    """
    production: list[PredictionRecord] = []
    synthetic: list[PredictionRecord] = []
    newest = -math.inf
    for record in records:
        if len(production) + len(synthetic) >= max_records:
            break
        if record.synthetic:
            synthetic.append(record)
            continue
        newest = max(newest, record.event_ts)
        if record.event_ts < newest - hours * 3600.0 - OUT_OF_ORDER_S:
            break
        production.append(record)
    cutoff = newest - hours * 3600.0
    window = sorted((r for r in production if r.event_ts >= cutoff), key=lambda r: r.event_ts)
    return window, synthetic


def read_window(
    log_dir: Path,
    hours: float,
    *,
    max_records: int = 200_000,
    current_release_only: bool = False,
    include_fallback: bool = False,
) -> list[PredictionRecord]:
    """Production records whose event time lies within ``hours`` of the newest, oldest first.

    The monitors' window (see ``_event_window`` for how far it reads). Fallback and synthetic
    records are left out, as in ``read_recent``.
    """
    newest_first = _newest_first(
        log_dir,
        include_fallback=include_fallback,
        include_synthetic=False,
        current_release_only=current_release_only,
    )
    return _event_window(newest_first, hours, max_records)[0]


def read_served_window(
    log_dir: Path,
    hours: float,
    *,
    max_records: int = 200_000,
    current_release_only: bool = False,
) -> list[PredictionRecord]:
    """Everything serving answered in the monitors' window, synthetic and fallback included,
    oldest logged first: what the latency monitor judges.

    Production records are ``read_window``'s (``hours`` of event time back from the newest).
    Synthetic requests (load tests, probes) have no place in simulated time — they replay
    transactions drawn from the future, at rates no customer produces — so they are placed by
    wall clock: those logged since the window's first production record was. Without any
    production record (a stack run without traffic), every synthetic record read counts.
    """
    newest_first = _newest_first(
        log_dir,
        include_fallback=True,
        include_synthetic=True,
        current_release_only=current_release_only,
    )
    production, synthetic = _event_window(newest_first, hours, max_records)
    if production:
        since = min(r.logged_ts for r in production)
        synthetic = [r for r in synthetic if r.logged_ts >= since]
    return sorted([*production, *synthetic], key=lambda r: r.logged_ts)


def read_rejections(
    log_dir: Path, *, since_event_ts: float | None = None, include_synthetic: bool = False
) -> list[RejectionRecord]:
    """Requests serving refused (``rejections-*.jsonl``) whose event time is at or after
    ``since_event_ts`` (all when None), oldest first; synthetic ones left out by default."""
    out: list[RejectionRecord] = []
    stop = None if since_event_ts is None else since_event_ts - OUT_OF_ORDER_S
    for path, data in _lines_newest_first(log_dir, "rejections"):
        record = RejectionRecord.from_json(data, where=f"a record of {path}")
        if stop is not None and record.event_ts < stop:
            return sorted(out, key=lambda r: r.event_ts)
        if record.synthetic and not include_synthetic:
            continue
        if since_event_ts is None or record.event_ts >= since_event_ts:
            out.append(record)
    return sorted(out, key=lambda r: r.event_ts)


def by_release(records: Iterable[PredictionRecord]) -> dict[str, int]:
    """How many of ``records`` each serving release scored (``"unknown"``: no release logged)."""
    return dict(Counter(r.release or "unknown" for r in records))


def span_hours(records: list[PredictionRecord]) -> float:
    """Event time covered by ``records`` (oldest first), in hours."""
    if len(records) < 2:
        return 0.0
    return (records[-1].event_ts - records[0].event_ts) / 3600.0


LOGGED_ORDER_SLACK_S = 5.0


def iter_log(
    log_dir: Path,
    *,
    logged_since: datetime | None = None,
    include_fallback: bool = False,
    include_synthetic: bool = False,
) -> Iterator[PredictionRecord]:
    """Records logged (wall clock, ``logged_at``) at or after ``logged_since``, newest first;
    the whole log when it is None.

    For monitors that need every record of a period rather than the newest N: label-based
    performance and decisions (the whole log, reduced to a few fields as it streams by), a
    scenario's probe (what it just sent). Records reach the log in the order they were scored,
    give or take the moment between stamping and queueing, so reading stops at the first
    record older than ``logged_since`` by more than ``LOGGED_ORDER_SLACK_S``.
    """
    stop = None if logged_since is None else logged_since.timestamp() - LOGGED_ORDER_SLACK_S
    for record in _newest_first(
        log_dir, include_fallback=include_fallback, include_synthetic=include_synthetic
    ):
        if logged_since is not None:
            logged = record.logged_ts
            if logged < stop:
                return
            if logged < logged_since.timestamp():
                continue
        yield record


def read_log(
    log_dir: Path,
    *,
    logged_since: datetime | None = None,
    include_fallback: bool = False,
    include_synthetic: bool = False,
) -> list[PredictionRecord]:
    """``iter_log``'s records, oldest first, as a list."""
    records = list(
        iter_log(
            log_dir,
            logged_since=logged_since,
            include_fallback=include_fallback,
            include_synthetic=include_synthetic,
        )
    )
    return records[::-1]


def load_champion(settings: Settings) -> registry.ModelBundle:
    """The champion bundle from MLflow; when MLflow is unreachable, the one serving last loaded.

    Raises LookupError with the next step to take when neither is available.
    """
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail fast, then fall back
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    cache = settings.monitoring_dir / MODEL_CACHE_DIR
    cache.mkdir(parents=True, exist_ok=True)
    try:
        return registry.load_alias(settings, cache)
    except LookupError:
        raise
    except Exception as exc:  # any transport error means "MLflow is not there"
        for directory in (cache, settings.serving_cache_dir):
            bundle = registry.last_loaded(directory)
            if bundle is not None:
                log.warning(
                    "MLflow at %s unreachable (%s); judging against the last loaded champion,"
                    " version %s",
                    settings.tracking_uri,
                    type(exc).__name__,
                    bundle.version,
                )
                return bundle
        raise LookupError(
            f"cannot reach MLflow at {settings.tracking_uri} and no champion was ever loaded"
            " here: start the stack (`make up`) and try again"
        ) from exc


def new_run_dir(settings: Settings, now: datetime | None = None) -> Path:
    """A fresh ``<home>/monitoring/<UTC timestamp>/`` folder for one monitoring run."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    directory = settings.monitoring_dir / stamp
    directory.mkdir(parents=True, exist_ok=False)
    return directory


def workspace_dir(settings: Settings) -> Path:
    return settings.monitoring_dir / WORKSPACE_DIR
