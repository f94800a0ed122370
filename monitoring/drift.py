"""Distribution drift: PSI per model input and on the score, serving window vs training sample.

Owns: the drift judgement (Evidently 0.7 ``ValueDrift`` per column, with the PSI defined here
registered as Evidently's method ``psi_reference_bins``; each PSI judged ok / warn / alert
against ``Settings.psi_warn`` / ``psi_alert``) and its outputs: a self-contained HTML report, a
JSON summary and a run in the Evidently workspace (``monitoring.workspace``: the drift tab of
the "fraudlab" dashboard), so ``evidently ui`` shows runs over time.
Must not: read the log or load the model other than through ``monitoring.sources``, or act
on a verdict (retraining is the DAG's decision).

Two choices keep the monitor from crying wolf (both are knobs a careless change can break):
- Bins come from the training reference alone (``Settings.psi_binning`` "reference"): its deciles
  for continuous columns, one bin per value for columns with few values. Evidently's built-in
  ``psi`` bins the pooled samples into equal-width bins ("pooled"), so a heavy-tailed count
  (merchant volume) gets nearly empty bins whose ratios swing with a handful of rows, and the
  bins move with the current window itself; the more bins (``Settings.psi_bins``), the worse.
- The window is whole days of event time (``Settings.monitor_window_hours``): traffic has a
  daily cycle — night-time buyers, amounts and fraud differ from daytime ones — so part of a day
  differs from any training sample. A window shorter than that, or with fewer than
  ``Settings.monitor_min_records`` predictions, gets no verdict.

The comparison is pure (``compute_drift``: frames in, result out); ``run_drift`` does the I/O.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from foundation.settings import Settings
from monitoring import sources, workspace

if TYPE_CHECKING:
    from evidently.core.report import Snapshot

    from model.record import PredictionRecord
from model.registry import ModelBundle

Status = Literal["ok", "warn", "alert", "insufficient_data"]
Binning = Literal["reference", "pooled"]
SCORE = "score"
REFERENCE_FILE = "reference.parquet"
PSI_METHOD = "psi_reference_bins"
FEW_VALUES = 20  # a column with at most this many distinct reference values is binned by value
SMOOTHING = 0.5  # added to every bin's count: an empty bin must not make the ratio infinite
# A window must cover this share of Settings.monitor_window_hours (a few minutes' gap at the
# edges of a day of traffic is not a partial day).
MIN_SPAN_SHARE = 0.95
_RANK: dict[str, int] = {"ok": 0, "warn": 1, "alert": 2}


@dataclass(frozen=True)
class ColumnDrift:
    """One column's PSI (None when it could not be computed, e.g. empty) and its verdict."""

    column: str
    psi: float | None
    status: Status


@dataclass
class DriftResult:
    status: Status
    n_current: int
    n_reference: int
    min_records: int
    psi_warn: float
    psi_alert: float
    columns: list[ColumnDrift] = field(default_factory=list)
    model_version: str | None = None
    run_dir: str | None = None
    seconds: float | None = None
    span_hours: float | None = None  # event time the window covers
    min_span_hours: float = 0.0  # event time a window must cover to be judged
    reason: str | None = None  # why there is no verdict
    bins: int = 10  # PSI bins per continuous column, and how they were placed
    binning: str = "reference"

    @property
    def flagged(self) -> list[ColumnDrift]:
        return [c for c in self.columns if c.status in ("warn", "alert")]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextmanager
def _quiet_import() -> Iterator[None]:
    """Evidently's import warns about numpy and litestar internals no fraudlab user can fix."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def judge(psi: float | None, warn: float, alert: float) -> Status:
    """ok / warn / alert for one PSI; a PSI that could not be computed is not an alarm."""
    if psi is None or math.isnan(psi):
        return "ok"
    if psi >= alert:
        return "alert"
    return "warn" if psi >= warn else "ok"


def overall(statuses: list[Status]) -> Status:
    return max(statuses, key=lambda s: _RANK[s], default="ok")


def bin_edges(reference: np.ndarray, bins: int) -> tuple[np.ndarray, bool]:
    """The bins of one column, from the reference alone: (edges, by_value).

    ``by_value``: the edges are the reference's distinct values, one bin each (plus one for
    values the reference never had); otherwise they are its inner quantiles, deduplicated (a
    value carrying more than one bin's mass gets a bin of its own).
    """
    values = np.unique(reference)
    if values.size <= FEW_VALUES:
        return values, True
    return np.unique(np.quantile(reference, np.linspace(0.0, 1.0, bins + 1)[1:-1])), False


def _bin_index(x: np.ndarray, edges: np.ndarray, by_value: bool) -> np.ndarray:
    if not by_value:
        return np.searchsorted(edges, x, side="right")  # bin i holds [edges[i-1], edges[i])
    position = np.searchsorted(edges, x)
    known = (position < edges.size) & (edges[np.minimum(position, edges.size - 1)] == x)
    return np.where(known, position, edges.size)  # the last bin: values never seen


def pooled_edges(reference: np.ndarray, current: np.ndarray, bins: int) -> np.ndarray:
    """Inner edges of ``bins`` equal-width bins over the range of both samples together (how
    Evidently's built-in ``psi`` bins a numerical column)."""
    return np.histogram_bin_edges(np.concatenate([reference, current]), bins=bins)[1:-1]


def psi(
    reference: np.ndarray, current: np.ndarray, bins: int = 10, binning: Binning = "reference"
) -> float:
    """Population stability index of ``current`` against ``reference`` (NaN when either is empty).

    PSI = Σ (q − p) · ln(q / p) over bins fixed by the reference (``bin_edges``), p and q the
    shares of reference and current rows per bin, each count smoothed by ``SMOOTHING``.
    Missing values are left out. ``binning="pooled"`` bins a continuous column into equal-width
    bins over both samples instead (``pooled_edges``; the module docstring says why not).
    """
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    if ref.size == 0 or cur.size == 0:
        return math.nan
    edges, by_value = bin_edges(ref, bins)
    if binning == "pooled" and not by_value:
        edges = pooled_edges(ref, cur, bins)
    n_bins = edges.size + 1
    p = np.bincount(_bin_index(ref, edges, by_value), minlength=n_bins) + SMOOTHING
    q = np.bincount(_bin_index(cur, edges, by_value), minlength=n_bins) + SMOOTHING
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum((q - p) * np.log(q / p)))


_registered_bins: tuple[int, Binning] | None = None


def register_psi(bins: int, binning: Binning = "reference") -> None:
    """Make ``psi`` available to Evidently as the method ``PSI_METHOD`` (with these bins)."""
    global _registered_bins
    if _registered_bins == (bins, binning):
        return
    with _quiet_import():
        from evidently.legacy.calculations.stattests.registry import StatTest, register_stattest
        from evidently.legacy.core import ColumnType

    def stattest(
        reference: pd.Series, current: pd.Series, _type: object, threshold: float
    ) -> tuple[float, bool]:
        value = psi(reference.to_numpy(dtype=float), current.to_numpy(dtype=float), bins, binning)
        return value, bool(value >= threshold)

    register_stattest(
        StatTest(
            name=PSI_METHOD,
            display_name=f"PSI ({bins} {binning} bins)",
            allowed_feature_types=[ColumnType.Numerical, ColumnType.Categorical],
            default_threshold=0.2,
        ),
        stattest,
    )
    _registered_bins = (bins, binning)


def drift_snapshot(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: list[str],
    alert: float,
    bins: int = 10,
    binning: Binning = "reference",
) -> Snapshot:
    """Evidently's report of ``psi`` per column (its per-column test fails at the alert)."""
    with _quiet_import():
        from evidently import DataDefinition, Dataset, Report
        from evidently.metrics import ValueDrift

    register_psi(bins, binning)
    definition = DataDefinition(numerical_columns=columns)
    report = Report(
        [ValueDrift(column=c, method=PSI_METHOD, threshold=alert) for c in columns],
        include_tests=True,
    )
    return report.run(
        current_data=Dataset.from_pandas(current[columns], data_definition=definition),
        reference_data=Dataset.from_pandas(reference[columns], data_definition=definition),
    )


def psi_by_column(snapshot: Snapshot) -> dict[str, float | None]:
    values: dict[str, float | None] = {}
    for metric in snapshot.dict()["metrics"]:
        column = metric["config"]["column"]
        value = metric.get("value")
        values[column] = None if value is None or not math.isfinite(value) else float(value)
    return values


def compute_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: list[str],
    *,
    warn: float,
    alert: float,
    min_records: int,
    bins: int = 10,
    binning: Binning = "reference",
    span_hours: float | None = None,
    min_span_hours: float = 0.0,
) -> tuple[DriftResult, Snapshot | None]:
    """Judge ``current`` against ``reference`` column by column (PSI); no I/O.

    ``span_hours`` is the event time the window covers; below ``min_span_hours`` (or with fewer
    than ``min_records`` rows) there is no verdict. Returns the result and Evidently's snapshot
    (None without a verdict).
    """
    result = DriftResult(
        status="insufficient_data",
        n_current=len(current),
        n_reference=len(reference),
        min_records=min_records,
        psi_warn=warn,
        psi_alert=alert,
        span_hours=None if span_hours is None else round(span_hours, 2),
        min_span_hours=min_span_hours,
        bins=bins,
        binning=binning,
    )
    if len(current) < min_records or len(reference) < min_records:
        result.reason = (
            f"{len(current)} predictions in the window, {len(reference)} reference rows: a"
            f" verdict needs {min_records} of each"
        )
        return result, None
    if span_hours is not None and span_hours < min_span_hours:
        result.reason = (
            f"the window covers {span_hours:.1f} h of event time; a verdict needs"
            f" {min_span_hours:.1f} h (whole days: traffic has a daily cycle)"
        )
        return result, None
    missing = [c for c in columns if c not in current or c not in reference]
    if missing:
        raise KeyError(f"columns missing from the window or the reference sample: {missing}")
    snapshot = drift_snapshot(reference, current, columns, alert, bins, binning)
    psi = psi_by_column(snapshot)
    result.columns = [ColumnDrift(c, psi.get(c), judge(psi.get(c), warn, alert)) for c in columns]
    result.status = overall([c.status for c in result.columns])
    return result, snapshot


def window_frame(
    records: list[PredictionRecord],
    feature_order: list[str],
    model_version: str | None = None,
    min_scores: int = 0,
) -> pd.DataFrame:
    """The logged model inputs and score of each record, in the model's feature order.

    With ``model_version``, only that version's scores are kept (others are missing): the
    reference holds the champion's own scores, and another model's scores differ from them by
    design, not by drift — right after a promotion the window still holds the old champion's.
    Fewer than ``min_scores`` of them and the score is not judged at all (too few to bin).
    """
    frame = pd.DataFrame.from_records(
        [
            {
                **r.model_inputs,
                SCORE: r.score
                if model_version is None or str(r.model_version) == str(model_version)
                else None,
            }
            for r in records
        ],
        columns=[*feature_order, SCORE],
    ).astype("float64")
    if frame[SCORE].notna().sum() < min_scores:
        frame[SCORE] = float("nan")
    return frame


def thin(records: list[PredictionRecord], limit: int) -> list[PredictionRecord]:
    """At most ``limit`` records spread evenly over the window (every k-th, order kept)."""
    if len(records) <= limit:
        return records
    keep = np.linspace(0, len(records) - 1, limit).round().astype(int)
    return [records[i] for i in keep]


def judge_window(
    settings: Settings, bundle: ModelBundle, window: list[PredictionRecord]
) -> tuple[DriftResult, list[PredictionRecord], Snapshot | None]:
    """The drift verdict on ``window`` (production records, oldest first, as
    ``sources.read_window`` returns them) against ``bundle``'s training sample, with the
    settings' thresholds, bins and minimums: the judgement of ``run_drift`` without its reports.
    Returns the result, the records judged (thinned) and Evidently's snapshot."""
    reference = pd.read_parquet(bundle.directory / REFERENCE_FILE)
    records = thin(window, settings.monitor_window)
    columns = [*bundle.feature_order, SCORE]
    current = window_frame(
        records, bundle.feature_order, bundle.version, settings.monitor_min_records
    )
    scored = bool(current[SCORE].notna().any())
    if not scored:  # Evidently refuses an empty column: judge the inputs, report the score apart
        columns.remove(SCORE)
    result, snapshot = compute_drift(
        reference,
        current,
        columns,
        warn=settings.psi_warn,
        alert=settings.psi_alert,
        min_records=settings.monitor_min_records,
        bins=settings.psi_bins,
        binning=settings.psi_binning,
        span_hours=sources.span_hours(window),
        min_span_hours=settings.monitor_window_hours * MIN_SPAN_SHARE,
    )
    result.model_version = bundle.version
    if not scored and result.columns:
        result.columns.append(ColumnDrift(SCORE, None, "ok"))  # too few of its own scores yet
    return result, records, snapshot


def run_drift(settings: Settings, run_dir: Path | None = None) -> DriftResult:
    """Judge the newest ``monitor_window_hours`` of production predictions against the
    champion's training sample; write ``drift.html`` and ``drift.json`` and add the run to the
    workspace.
    """
    started = time.perf_counter()
    run_dir = run_dir or sources.new_run_dir(settings)
    bundle = sources.load_champion(settings)
    window = sources.read_window(
        settings.prediction_log_dir,
        settings.monitor_window_hours,
        current_release_only=settings.monitor_current_release_only,
    )
    result, records, snapshot = judge_window(settings, bundle, window)
    result.run_dir = str(run_dir)
    summary: dict[str, Any] = {}
    if snapshot is not None:
        snapshot.save_html(str(run_dir / "drift.html"))
        summary["workspace_run"] = workspace.add_snapshot(
            settings,
            snapshot,
            monitor="drift",
            name=f"drift {run_dir.name}",
            checks={c.column: c.status for c in result.columns},
            check_noun="columns",
            metadata={"model_version": str(bundle.version)},
            panels=workspace.drift_panels(bundle.feature_order, score=SCORE),
        )
    if window:
        summary["window"] = {
            "first_event_ts": window[0].event_ts,
            "last_event_ts": window[-1].event_ts,
            "predictions": len(window),
            "judged": len(records),
        }
    result.seconds = round(time.perf_counter() - started, 2)
    (run_dir / "drift.json").write_text(
        json.dumps({**result.to_dict(), **summary}, indent=2) + "\n"
    )
    return result
