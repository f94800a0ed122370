"""Training-serving skew: the features serving used vs the same features recomputed offline.

Owns: taking the newest logged production requests, fetching their stored features again
through Feast's point-in-time join (``get_historical_features`` at the same entities and event
time, through the champion's feature service: what training would have read), comparing them
with what serving logged, rebuilding the model inputs from them with the shared transform and
comparing those with the inputs serving logged (a serving-side transform that differs from
training's shows here, feature by feature), re-scoring with the champion's ONNX graph, and
writing ``skew.html`` and ``skew.json`` into the run folder, and the mismatch rates into the
Evidently workspace's "skew" tab (``monitoring.gauges``).
Must not: compute a model input itself (``features.transforms`` does, for everyone), define
features, or write to the feature store.

The comparison (``compare_features``, ``compare_scores``) is pure; ``run_skew`` does the I/O.
A healthy stack shows no mismatch at all: serving and training share one definition and one
transform, so any difference is a bug, not noise.
"""

from __future__ import annotations

import html
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from features.transforms import (
    PASSTHROUGH_FEATURES,
    REQUEST_FIELDS,
    STORED_FEATURES,
    build_model_inputs,
    to_matrix,
)
from foundation.settings import Settings
from model.record import PredictionRecord
from monitoring import gauges, sources

Status = Literal["ok", "alert", "insufficient_data"]
KEY = "request_id"
REL_TOL = 1e-9
ABS_TOL = 1e-9
SCORE_TOL = 1e-4  # the ONNX parity tolerance: a score "differs" beyond this
N_EXAMPLES = 3


@dataclass(frozen=True)
class FeatureSkew:
    """How often one stored feature differed between serving and offline, and by how much."""

    feature: str
    compared: int
    mismatches: int
    max_abs_diff: float | None  # numeric features only; None for strings or when all missing
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def mismatch_rate(self) -> float:
        return self.mismatches / self.compared if self.compared else 0.0


@dataclass(frozen=True)
class ScoreSkew:
    compared: int
    differing: int  # |served score - offline score| > SCORE_TOL
    max_abs_diff: float | None


@dataclass
class SkewResult:
    status: Status
    n_records: int
    features: list[FeatureSkew] = field(default_factory=list)  # stored features
    inputs: list[FeatureSkew] = field(default_factory=list)  # model inputs after the transform
    score: ScoreSkew | None = None
    model_version: str | None = None
    run_dir: str | None = None
    seconds: float | None = None
    workspace_run: str | None = None
    workspace_error: str | None = None
    # records judged per serving release, and those of earlier releases left out of the sample
    releases: dict[str, int] = field(default_factory=dict)
    earlier_releases: dict[str, int] = field(default_factory=dict)

    @property
    def mismatches(self) -> int:
        return sum(f.mismatches for f in self.features)

    @property
    def input_mismatches(self) -> int:
        return sum(f.mismatches for f in self.inputs)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("features", "inputs"):
            for entry, feature in zip(data[key], getattr(self, key), strict=True):
                entry["mismatch_rate"] = feature.mismatch_rate
        data["mismatches"] = self.mismatches
        data["input_mismatches"] = self.input_mismatches
        return data


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _plain(value: object) -> object:
    """A JSON-friendly scalar (numpy scalars unwrapped, missing as None)."""
    if _missing(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def values_differ(served: object, offline: object) -> tuple[bool, float | None]:
    """Whether two values of a feature differ, and their absolute difference when numeric.

    Missing (None or NaN) equals missing; strings compare exactly; numbers to 1e-9.
    """
    if _missing(served) or _missing(offline):
        return not (_missing(served) and _missing(offline)), None
    if isinstance(served, str) or isinstance(offline, str):
        return served != offline, None
    a, b = float(served), float(offline)  # type: ignore[arg-type]
    return not math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL), abs(a - b)


def compare_features(
    served: pd.DataFrame, offline: pd.DataFrame, features: list[str] | tuple[str, ...]
) -> list[FeatureSkew]:
    """Per feature: rows compared, mismatches, largest absolute difference, a few examples.

    Both frames are indexed by request id; a request missing offline counts as a mismatch
    of every feature (the offline join lost it).
    """
    results = []
    for name in features:
        mismatches, largest, examples = 0, None, []
        for key, value in served[name].items():
            other = offline[name].get(key) if key in offline.index else None
            differ, diff = values_differ(value, other)
            if key not in offline.index:
                differ = True
            if diff is not None and (largest is None or diff > largest):
                largest = diff
            if differ:
                mismatches += 1
                if len(examples) < N_EXAMPLES:
                    examples.append({KEY: key, "served": _plain(value), "offline": _plain(other)})
        results.append(FeatureSkew(name, len(served), mismatches, largest, examples))
    return results


def compare_scores(
    served: np.ndarray, offline: np.ndarray, tolerance: float = SCORE_TOL
) -> ScoreSkew:
    served, offline = np.asarray(served, dtype=np.float64), np.asarray(offline, dtype=np.float64)
    if served.size == 0:
        return ScoreSkew(0, 0, None)
    diff = np.abs(served - offline)
    return ScoreSkew(int(served.size), int((diff > tolerance).sum()), float(diff.max()))


def stored_names(offline: pd.DataFrame) -> list[str]:
    """The stored features to compare: every model's, plus the pass-through features the
    model's feature service serves (``fraud_model_v2``'s dispute count)."""
    return [*STORED_FEATURES, *(f for f in PASSTHROUGH_FEATURES if f in offline.columns)]


def served_frame(
    records: list[PredictionRecord], names: list[str] | tuple[str, ...] = STORED_FEATURES
) -> pd.DataFrame:
    """The stored features each record was served with, indexed by request id."""
    return pd.DataFrame.from_records(
        [r.features for r in records],
        index=pd.Index([r.request_id for r in records], name=KEY),
        columns=list(names),
    )


def entity_frame(records: list[PredictionRecord]) -> pd.DataFrame:
    """Feast's entity frame: the same entities at the same event time, keyed by request id."""
    return pd.DataFrame(
        {
            KEY: [r.request_id for r in records],
            "user_id": np.array([r.user_id for r in records], dtype=np.int64),
            "merchant_id": np.array([r.merchant_id for r in records], dtype=np.int64),
            "device_id": np.array([r.device_id for r in records], dtype=np.int64),
            "event_timestamp": pd.to_datetime([r.event_ts for r in records], unit="s", utc=True),
        }
    )


def offline_inputs(records: list[PredictionRecord], stored: pd.DataFrame) -> pd.DataFrame:
    """The model inputs the shared transform builds from each record's request fields and the
    ``stored`` (offline) features: what training computes. Indexed by request id."""
    keys = [r.request_id for r in records]
    stored = stored.reindex(keys)
    columns: dict[str, object] = {
        name: [r.request.get(name) for r in records] for name in REQUEST_FIELDS
    }
    for name in stored_names(stored):
        columns[name] = stored[name].astype(object).where(stored[name].notna(), None).to_list()
    return pd.DataFrame(build_model_inputs(columns), index=pd.Index(keys, name=KEY))


def model_matrix(
    records: list[PredictionRecord], stored: pd.DataFrame, feature_order: list[str]
) -> np.ndarray:
    """The model input matrix from each record's request fields and ``stored`` features."""
    inputs = offline_inputs(records, stored)
    return to_matrix({name: inputs[name].to_numpy() for name in inputs}, feature_order)


def served_inputs(records: list[PredictionRecord], names: list[str]) -> pd.DataFrame:
    """The model inputs serving logged for each record, indexed by request id."""
    return pd.DataFrame.from_records(
        [r.model_inputs or {} for r in records],
        index=pd.Index([r.request_id for r in records], name=KEY),
        columns=names,
    )


def offline_features(settings: Settings, entities: pd.DataFrame, service: str) -> pd.DataFrame:
    """Point-in-time stored features through ``service``, indexed by request id."""
    from features.store import open_store

    store = open_store(settings)
    frame = store.get_historical_features(
        entity_df=entities, features=store.get_feature_service(service)
    ).to_df()
    return frame.set_index(KEY)


def compute_skew(
    records: list[PredictionRecord],
    offline: pd.DataFrame,
    *,
    session: Any = None,
    feature_order: list[str] | None = None,
    model_version: str | None = None,
) -> SkewResult:
    """Compare served with offline features; with a session, re-score too (records the
    champion scored only: another version's score is not comparable)."""
    if not records:
        return SkewResult("insufficient_data", 0, model_version=model_version)
    names = stored_names(offline)
    features = compare_features(served_frame(records, names), offline, names)
    result = SkewResult("ok", len(records), features, model_version=model_version)
    # Inputs are compared on the requests found offline: a request the join lost is already a
    # mismatch of every stored feature, and has no offline inputs to compare.
    found = [r for r in records if r.request_id in offline.index]
    if found:
        rebuilt = offline_inputs(found, offline)
        names = [n for n in rebuilt.columns if any(n in (r.model_inputs or {}) for r in found)]
        result.inputs = compare_features(served_inputs(found, names), rebuilt, names)
    if session is not None and feature_order is not None:
        from model.export import onnx_scores

        same = [r for r in records if str(r.model_version) == str(model_version)]
        present = [r for r in same if r.request_id in offline.index]
        scores = (
            np.ravel(onnx_scores(session, model_matrix(present, offline, feature_order)))
            if present
            else np.array([])
        )
        result.score = compare_scores(np.array([r.score for r in present]), scores)
    if (
        result.mismatches
        or result.input_mismatches
        or (result.score is not None and result.score.differing)
    ):
        result.status = "alert"
    return result


def _feature_rows(features: list[FeatureSkew]) -> list[str]:
    rows = []
    for f in features:
        style = ' style="background:#fdd"' if f.mismatches else ""
        diff = "" if f.max_abs_diff is None else f"{f.max_abs_diff:.3g}"
        examples = html.escape(json.dumps(f.examples)) if f.examples else ""
        rows.append(
            f"<tr{style}><td>{html.escape(f.feature)}</td><td>{f.compared}</td>"
            f"<td>{f.mismatches}</td><td>{f.mismatch_rate:.2%}</td><td>{diff}</td>"
            f"<td><code>{examples}</code></td></tr>"
        )
    return rows


def render_html(result: SkewResult) -> str:
    """A small self-contained page: one row per feature, the score row last."""
    rows = []
    sections = [("stored features (online vs offline point in time)", result.features)]
    if result.inputs:
        sections.append(("model inputs (served vs the shared transform offline)", result.inputs))
    for title, group in sections:
        rows.append(f"<tr><th colspan=6 style='text-align:left'>{html.escape(title)}</th></tr>")
        rows.extend(_feature_rows(group))
    if result.score is not None:
        s = result.score
        diff = "" if s.max_abs_diff is None else f"{s.max_abs_diff:.3g}"
        style = ' style="background:#fdd"' if s.differing else ""
        rate = f"{s.differing / s.compared:.2%}" if s.compared else ""
        rows.append(
            f"<tr{style}><td><b>score</b> (champion re-run, tol {SCORE_TOL})</td>"
            f"<td>{s.compared}</td><td>{s.differing}</td><td>{rate}</td><td>{diff}</td>"
            "<td></td></tr>"
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>fraudlab skew</title>"
        "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:4px}"
        "table{border-collapse:collapse}</style></head><body>"
        f"<h1>Training-serving skew: {html.escape(result.status)}</h1>"
        f"<p>{result.n_records} logged requests re-fetched offline (point in time); "
        f"model version {html.escape(str(result.model_version))}.</p>"
        "<table><tr><th>feature</th><th>compared</th><th>mismatches</th><th>rate</th>"
        "<th>max |diff|</th><th>examples</th></tr>" + "".join(rows) + "</table></body></html>"
    )


def workspace_values(result: SkewResult) -> dict[str, float | None]:
    """Mismatch rates per stored feature and model input, and the share of scores that differ."""
    values: dict[str, float | None] = {
        **{f"stored_{f.feature}": f.mismatch_rate for f in result.features},
        **{f"input_{f.feature}": f.mismatch_rate for f in result.inputs},
    }
    if result.score is not None and result.score.compared:
        values["scores_differing"] = result.score.differing / result.score.compared
    return values


def workspace_panels(result: SkewResult) -> list:
    from monitoring import workspace

    return [
        workspace.line_panel(
            "Share of requests whose stored features differ offline",
            [gauges.series(f"stored_{f.feature}", f.feature) for f in result.features],
        ),
        workspace.line_panel(
            "Share of requests whose model inputs differ from the shared transform",
            [gauges.series(f"input_{f.feature}", f.feature) for f in result.inputs],
        ),
        workspace.line_panel(
            "Share of re-scored requests whose score differs (> 1e-4)",
            [gauges.series("scores_differing", "scores")],
        ),
    ]


def run_skew(settings: Settings, run_dir: Path | None = None) -> SkewResult:
    """Recompute the newest ``skew_sample`` served requests offline and compare."""
    from model.export import onnx_session

    started = time.perf_counter()
    run_dir = run_dir or sources.new_run_dir(settings)
    bundle = sources.load_champion(settings)
    records = sources.read_recent(
        settings.prediction_log_dir,
        settings.skew_sample,
        current_release_only=settings.monitor_current_release_only,
    )
    if records:
        offline = offline_features(settings, entity_frame(records), bundle.feature_service)
        session = onnx_session(bundle.onnx_path.read_bytes(), threads=settings.ort_threads)
        result = compute_skew(
            records,
            offline,
            session=session,
            feature_order=bundle.feature_order,
            model_version=bundle.version,
        )
    else:
        result = compute_skew([], pd.DataFrame(), model_version=bundle.version)
    result.releases = sources.by_release(records)
    if settings.monitor_current_release_only:
        sample = sources.read_recent(settings.prediction_log_dir, settings.skew_sample)
        judged = {r.request_id for r in records}
        result.earlier_releases = sources.by_release(
            r for r in sample if r.request_id not in judged
        )
    result.run_dir = str(run_dir)
    if result.status != "insufficient_data":
        result.workspace_run, result.workspace_error = gauges.record(
            settings,
            monitor="skew",
            name=f"skew {run_dir.name}",
            values=workspace_values(result),
            checks={
                **{
                    f"stored {f.feature}": "alert" if f.mismatches else "ok"
                    for f in result.features
                },
                **{f"input {f.feature}": "alert" if f.mismatches else "ok" for f in result.inputs},
            },
            check_noun="features",
            panels=workspace_panels(result),
            metadata={"model_version": str(result.model_version), "status": result.status},
        )
    result.seconds = round(time.perf_counter() - started, 2)
    (run_dir / "skew.html").write_text(render_html(result))
    (run_dir / "skew.json").write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n")
    return result
