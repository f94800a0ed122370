"""Distribution drift: PSI per model input and on the score, serving window vs training sample.

Owns: the drift judgement (Evidently 0.7 ``ValueDrift`` with ``method="psi"`` per column, each
PSI judged ok / warn / alert against ``Settings.psi_warn`` / ``psi_alert``) and its outputs: a
self-contained HTML report, a JSON summary and a snapshot in the Evidently workspace
(``<home>/monitoring/workspace``, project "fraudlab"), so ``evidently ui`` shows runs over time.
Must not: read the log or load the model other than through ``monitoring.sources``, or act
on a verdict (retraining is the DAG's decision).

The comparison is pure (``compute_drift``: frames in, result out); ``run_drift`` does the I/O.
A window smaller than ``Settings.monitor_min_records`` gets no verdict: a few hundred requests
from one hour of one day would "drift" from any training sample.
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

import pandas as pd

from fraudlab.settings import Settings
from monitoring import sources

if TYPE_CHECKING:
    from evidently.core.report import Snapshot

Status = Literal["ok", "warn", "alert", "insufficient_data"]
SCORE = "score"
PROJECT = "fraudlab"
PROJECT_DESCRIPTION = "fraudlab monitoring: PSI drift of model inputs and score"
REFERENCE_FILE = "reference.parquet"
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


def drift_snapshot(
    reference: pd.DataFrame, current: pd.DataFrame, columns: list[str], alert: float
) -> Snapshot:
    """Evidently's PSI per column (its own per-column test fails at the alert threshold)."""
    with _quiet_import():
        from evidently import DataDefinition, Dataset, Report
        from evidently.metrics import ValueDrift

    definition = DataDefinition(numerical_columns=columns)
    report = Report(
        [ValueDrift(column=c, method="psi", threshold=alert) for c in columns],
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
) -> tuple[DriftResult, Snapshot | None]:
    """Judge ``current`` against ``reference`` column by column (PSI); no I/O.

    Returns the result and Evidently's snapshot (None when the window was too small to judge).
    """
    result = DriftResult(
        status="insufficient_data",
        n_current=len(current),
        n_reference=len(reference),
        min_records=min_records,
        psi_warn=warn,
        psi_alert=alert,
    )
    if len(current) < min_records or len(reference) < min_records:
        return result, None
    missing = [c for c in columns if c not in current or c not in reference]
    if missing:
        raise KeyError(f"columns missing from the window or the reference sample: {missing}")
    snapshot = drift_snapshot(reference, current, columns, alert)
    psi = psi_by_column(snapshot)
    result.columns = [ColumnDrift(c, psi.get(c), judge(psi.get(c), warn, alert)) for c in columns]
    result.status = overall([c.status for c in result.columns])
    return result, snapshot


def window_frame(records: list[dict[str, Any]], feature_order: list[str]) -> pd.DataFrame:
    """The logged model inputs and score of each record, in the model's feature order."""
    frame = pd.DataFrame.from_records(
        [{**r["model_inputs"], SCORE: r["score"]} for r in records],
        columns=[*feature_order, SCORE],
    )
    return frame.astype("float64")


def add_to_workspace(directory: Path, snapshot: Snapshot, name: str) -> str:
    """Add the snapshot to the local Evidently workspace's "fraudlab" project; its run id."""
    with _quiet_import():
        from evidently.ui.workspace import Workspace

    workspace = Workspace.create(str(directory))
    found = workspace.search_project(PROJECT)
    project = found[0] if found else workspace.create_project(PROJECT, PROJECT_DESCRIPTION)
    ref = workspace.add_run(project.id, snapshot, name=name)
    return str(getattr(ref, "id", ref))


def run_drift(settings: Settings, run_dir: Path | None = None) -> DriftResult:
    """Judge the newest ``monitor_window`` non-fallback predictions against the champion's
    training sample; write ``drift.html`` and ``drift.json`` and add the run to the workspace.
    """
    started = time.perf_counter()
    run_dir = run_dir or sources.new_run_dir(settings)
    bundle = sources.load_champion(settings)
    reference = pd.read_parquet(bundle.directory / REFERENCE_FILE)
    records = sources.read_recent(settings.prediction_log_dir, settings.monitor_window)
    columns = [*bundle.feature_order, SCORE]
    current = window_frame(records, bundle.feature_order)
    result, snapshot = compute_drift(
        reference,
        current,
        columns,
        warn=settings.psi_warn,
        alert=settings.psi_alert,
        min_records=settings.monitor_min_records,
    )
    result.model_version = bundle.version
    result.run_dir = str(run_dir)
    summary: dict[str, Any] = {}
    if snapshot is not None:
        snapshot.save_html(str(run_dir / "drift.html"))
        summary["workspace_run"] = add_to_workspace(
            sources.workspace_dir(settings), snapshot, name=f"drift {run_dir.name}"
        )
    if records:
        summary["window"] = {
            "first_event_ts": records[0]["event_ts"],
            "last_event_ts": records[-1]["event_ts"],
        }
    result.seconds = round(time.perf_counter() - started, 2)
    (run_dir / "drift.json").write_text(
        json.dumps({**result.to_dict(), **summary}, indent=2) + "\n"
    )
    return result
