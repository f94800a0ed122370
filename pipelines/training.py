"""Training: point-in-time training set → LightGBM → calibration → threshold → ONNX → MLflow.

Owns: the training stages and the run work directory they share. A training run lives in
``<home>/training/<UTC stamp>/``; each stage reads what the previous ones wrote there and adds
its own output, so the stages can run in one process (``run``: ``fraudlab train``, the stack's
bootstrap) or one per Airflow task (``dags/fraudlab_retrain.py``) with only the path passed on:

1. ``start_run``: the run's parameters, fixed once (clock, training window, feature service,
   LightGBM parameters): ``run.json``.
2. ``validate_raw_data``: Great Expectations on the raw feed of the window (``validation.json``).
3. ``write_training_set``: the point-in-time join through the feature service and its suite
   (``training_set.parquet``, ``training_set.json``).
4. ``train``: LightGBM, Platt calibration, cost-optimal threshold (``model.lgb.txt``,
   ``fit.json``).
5. ``evaluate``: metrics and slices, ONNX export with its parity check and single-row latency,
   and the bundle exactly as MLflow stores it (``bundle/``: model.onnx, model_spec.json,
   feature_order.json, evaluation.json, reference.parquet, model card ...).
6. ``register``: the MLflow run (params, metrics, lineage tags, the bundle, any gate report)
   and a registered version under an alias (``registered.json``).

A failed data check stops the run before anything is fitted. Stages take their inputs as
arguments and the run directory; the pure helpers below them (``fit``, ``split_by_time``, ...)
do no I/O. Must not: define features (Feast repo), transform them (``features.transforms``),
compute metrics differently from ``model.evaluation``, or judge a model against the
champion (``pipelines.gates``).

The split is by time, never random: fraud patterns and merchants drift, and a random split
would let the model peek at the future. Labels are chargebacks that had arrived by the stack's
clock; transactions younger than ``label_maturity_days`` are left out because their chargebacks
may still be on their way (training on them would teach the model that recent fraud is legit).
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.transforms import build_model_inputs, model_features, to_matrix, transform_spec
from foundation.lineage import git_commit
from foundation.settings import Settings
from model import decision, evaluation, export
from model.registry import (
    BUNDLE_DIR,
    CHALLENGER,
    CHAMPION,
    NATIVE_FILE,
    ONNX_FILE,
    SPEC_FILE,
)
from model.slices import SLICES, slice_frame
from pipelines import validation
from pipelines.data import (
    REQUEST_COLUMNS,
    epoch_seconds,
    frame_hash,
    read_clock,
    read_labels,
    read_meta,
    read_raw,
)

# Windowed features need a full window of history before their values mean what they mean in
# production: the longest window a model input relies on is 30 days.
WARMUP_DAYS = 30

LGBM_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_child_samples": 50,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "scale_pos_weight": 10.0,  # imbalance: up-weight fraud; calibration undoes the bias
    "verbose": -1,
}
NUM_BOOST_ROUND = 400
EARLY_STOPPING_ROUNDS = 40

# files of a run work directory
RUN_FILE = "run.json"
VALIDATION_FILE = "validation.json"
TRAINING_SET_FILE = "training_set.parquet"
TRAINING_SET_META = "training_set.json"
FIT_FILE = "fit.json"
TAGS_FILE = "tags.json"
REGISTERED_FILE = "registered.json"
GATE_REPORT_FILES = ("gates.json", "gates.md")
KEEP_RUNS = 10  # run directories kept under <home>/training (a registered run lives in MLflow)
THRESHOLD_METHOD = "least cost expected under the calibrated validation scores"
CURVE_POINTS = 40  # thresholds at which evaluation.json keeps the validation cost curve

Progress = Callable[[str], AbstractContextManager[None]]


@dataclass
class TrainingSet:
    frame: pd.DataFrame  # request columns, stored features, label, split
    x: np.ndarray
    feature_order: list[str]


@dataclass(frozen=True)
class TrainingRun:
    """The parameters of one training run, fixed when it starts (``run.json``).

    Later stages may run in other processes, hours later, after the simulator moved the clock:
    they train on the window and with the parameters recorded here, not on today's settings.
    """

    directory: Path
    created: str
    reason: str
    clock: str
    train_window: tuple[str, str]
    feature_service: str
    lgbm_params: dict[str, Any] = field(default_factory=dict)
    num_boost_round: int = NUM_BOOST_ROUND

    @property
    def window(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        return pd.Timestamp(self.train_window[0]), pd.Timestamp(self.train_window[1])

    def path(self, name: str) -> Path:
        return self.directory / name

    @property
    def bundle(self) -> Path:
        return self.directory / BUNDLE_DIR

    def save(self) -> None:
        data = asdict(self)
        data["directory"] = str(self.directory)
        self.path(RUN_FILE).write_text(json.dumps(data, indent=2))

    @classmethod
    def load(cls, directory: Path | str) -> TrainingRun:
        directory = Path(directory)
        try:
            data = json.loads((directory / RUN_FILE).read_text())
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{directory} is not a training run (no {RUN_FILE}): start one with "
                "`fraudlab train` or `make retrain`"
            ) from None
        data["directory"] = directory
        data["train_window"] = tuple(data["train_window"])
        return cls(**data)


@dataclass(frozen=True)
class FittedModel:
    """What ``train`` produced: the booster, its calibration and decision threshold."""

    booster: Any
    calibration: export.PlattCalibration
    threshold: float


# --- pure helpers -------------------------------------------------------------------------


def lgbm_params(settings: Settings) -> dict[str, Any]:
    """The LightGBM parameters a run uses: the defaults, overridden by the settings."""
    return {**LGBM_PARAMS, **settings.train_lgbm_params}


def training_window(settings: Settings, clock: pd.Timestamp) -> tuple[pd.Timestamp, pd.Timestamp]:
    start = pd.Timestamp(read_meta(settings)["start"]) + pd.Timedelta(days=WARMUP_DAYS)
    end = clock - pd.Timedelta(days=settings.label_maturity_days)
    if end <= start + pd.Timedelta(days=7):
        raise ValueError(
            f"only {(end - start).days} days of matured labels between {start:%Y-%m-%d} and "
            f"{end:%Y-%m-%d}: generate more history (FRAUDLAB_HISTORY_DAYS) or lower "
            "FRAUDLAB_LABEL_MATURITY_DAYS"
        )
    return start, end


def entity_frame(
    txns: pd.DataFrame, labels: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    """Transactions in [start, end) with their label: 1 if a chargeback had arrived."""
    window = txns[(txns["event_timestamp"] >= start) & (txns["event_timestamp"] < end)]
    frame = window[list(REQUEST_COLUMNS)].copy()
    frame["label"] = frame["txn_id"].isin(labels["txn_id"]).astype(np.int8)
    return frame.reset_index(drop=True)


def model_matrix(frame: pd.DataFrame, feature_order: list[str]) -> np.ndarray:
    """The model input for rows of (request columns + stored features), via the shared transform."""
    columns = {name: frame[name].to_numpy() for name in frame.columns}
    columns["event_ts"] = epoch_seconds(frame["event_timestamp"])
    return to_matrix(build_model_inputs(columns), feature_order)


def split_by_time(frame: pd.DataFrame, fractions: tuple[float, float] = (0.7, 0.15)) -> np.ndarray:
    """'train' / 'valid' / 'test' by day: the test days are the latest."""
    day = frame["event_timestamp"].dt.floor("D")
    days = np.sort(day.unique())
    n_train = round(len(days) * fractions[0])
    n_valid = max(1, round(len(days) * fractions[1]))
    split = np.full(len(frame), "test", dtype=object)
    split[(day < days[n_train]).to_numpy()] = "train"
    split[((day >= days[n_train]) & (day < days[n_train + n_valid])).to_numpy()] = "valid"
    return split


def fit(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_valid: np.ndarray,
    y_valid: np.ndarray,
    feature_order: list[str],
    threads: int,
    seed: int,
    params: dict[str, Any] | None = None,
    num_boost_round: int = NUM_BOOST_ROUND,
):
    """LightGBM with early stopping on the validation split (``params``: LGBM_PARAMS)."""
    import lightgbm as lgb

    params = {
        **(LGBM_PARAMS if params is None else params),
        "num_threads": threads,
        "seed": seed,
        "metric": "average_precision",
        "deterministic": True,
    }
    train = lgb.Dataset(x_train, y_train, feature_name=feature_order, free_raw_data=False)
    valid = lgb.Dataset(x_valid, y_valid, reference=train)
    return lgb.train(
        params,
        train,
        num_boost_round,
        valid_sets=[valid],
        callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
    )


def single_row_latency_us(session, x: np.ndarray, n: int = 2000) -> dict[str, float]:
    rows = x[np.random.default_rng(0).integers(0, len(x), n)]
    times = np.empty(n)
    for i in range(n):
        started = time.perf_counter()
        export.onnx_scores(session, rows[i : i + 1])
        times[i] = time.perf_counter() - started
    return {
        "onnx_p50_us": float(np.percentile(times, 50) * 1e6),
        "onnx_p99_us": float(np.percentile(times, 99) * 1e6),
    }


def threshold_report(
    y: np.ndarray,
    score: np.ndarray,
    amount: np.ndarray,
    false_decline_cost: float,
    threshold: float,
    choice: dict[str, Any],
) -> dict[str, Any]:
    """The validation cost curve behind the threshold, for ``evaluation.json``: the cost the
    labels show and the cost expected under the calibrated scores, at ``CURVE_POINTS``
    thresholds spaced evenly in log between the median score and the highest, plus the chosen
    threshold, its bootstrap band and the labels' exact minimum."""
    labels = decision.cost_curve(y, score, amount, false_decline_cost)
    expected = decision.expected_cost_curve(score, amount, false_decline_cost)
    marks = {
        "chosen": threshold,
        "band_low": choice.get("band", [None, None])[0],
        "band_high": choice.get("band", [None, None])[1],
        "label_optimum": choice.get("label_optimum"),
    }
    grid = np.geomspace(
        max(float(np.median(score)), 1e-6), max(float(score.max()), 2e-6), CURVE_POINTS
    )
    points = np.unique(np.r_[grid, [v for v in marks.values() if v is not None]])
    at, expected_at = labels.at(points), expected.at(points)
    n = max(len(y), 1)
    return {
        **choice,
        "method": choice.get("method", THRESHOLD_METHOD),
        "chosen": threshold,
        "false_decline_cost": false_decline_cost,
        "validation_rows": len(y),
        "validation_frauds": int(np.sum(y)),
        "marks": marks,
        "curve": [
            {
                "threshold": float(t),
                "cost": float(c),
                "expected_cost": float(e),
                "cost_per_1k": float(c / n * 1000),
                "decline_rate": float(d),
                "mark": next((k for k, v in marks.items() if v is not None and v == t), None),
            }
            for t, c, e, d in zip(
                at.threshold, at.cost, expected_at.cost, at.decline_rate, strict=True
            )
        ],
    }


def threshold_markdown(report: dict[str, Any], rows: int = 14) -> list[str]:
    """The threshold section of ``evaluation.md``: the choice, its band, the curve thinned to
    about ``rows`` lines (the marked thresholds always shown)."""
    curve = report["curve"]
    step = max(1, len(curve) // rows)
    shown = [p for i, p in enumerate(curve) if p["mark"] or i % step == 0]
    band = report.get("band") or [float("nan"), float("nan")]
    lines = [
        "",
        "## Decision threshold (validation split)",
        "",
        (
            f"Chosen **{report['chosen']:.4f}** ({report['method']}); bootstrap band"
            f" {band[0]:.4f}–{band[1]:.4f} ({report.get('bootstrap_samples', 0)} resamples);"
            f" the labels' exact minimum {report.get('label_optimum', float('nan')):.4f}"
            f" ({report['validation_frauds']} frauds in {report['validation_rows']:,}"
            f" transactions; a false decline costs ${report['false_decline_cost']:.2f})."
        ),
        "",
        "| threshold | decline rate | cost (labels) | cost/1k | expected cost | |",
        "|---|---|---|---|---|---|",
    ]
    for p in shown:
        lines.append(
            f"| {p['threshold']:.4f} | {p['decline_rate']:.2%} | {p['cost']:,.0f} |"
            f" {p['cost_per_1k']:.1f} | {p['expected_cost']:,.0f} | {p['mark'] or ''} |"
        )
    return lines


def evaluation_markdown(
    metrics: dict[str, dict[str, float]],
    slices: dict[str, dict[str, dict[str, float]]],
    threshold: dict[str, Any] | None = None,
) -> str:
    lines = [
        "# Evaluation report",
        "",
        (
            "| split | n | frauds | PR-AUC | recall@1%FPR | "
            "precision | recall | cost/1k txns | Brier | ECE |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for split, m in metrics.items():
        lines.append(
            f"| {split} | {m['n']:.0f} | {m['positives']:.0f} | {m['pr_auc']:.3f} | "
            f"{m['recall_at_1pct_fpr']:.3f} | {m['precision']:.3f} | {m['recall']:.3f} | "
            f"{m['expected_cost_per_1k']:.1f} | {m['brier']:.5f} | {m['calibration_error']:.5f} |"
        )
    for name, groups in slices.items():
        lines += [
            "",
            f"## Test split by {name}",
            "",
            "| value | n | frauds | PR-AUC | recall |",
            "|---|---|---|---|---|",
        ]
        for value, m in groups.items():
            pr = f"{m['pr_auc']:.3f}" if "pr_auc" in m else "—"
            rc = f"{m['recall']:.3f}" if "recall" in m else "—"
            lines.append(f"| {value} | {m['n']:.0f} | {m['positives']:.0f} | {pr} | {rc} |")
    if threshold is not None:
        lines += threshold_markdown(threshold)
    return "\n".join(lines) + "\n"


def decision_baseline(metrics: dict[str, dict[str, float]], y: np.ndarray) -> dict[str, Any]:
    """What the decisions monitor compares live traffic with: the decline rate at the threshold
    on the test split (the latest days: what the model will see first) and the fraud rate of
    the whole training window."""
    return {
        "decline_rate": metrics["test"]["decline_rate"],
        "decline_rate_split": "test",
        "fraud_rate": float(np.mean(y)) if len(y) else float("nan"),
        "fraud_rate_rows": len(y),
    }


def model_card(
    settings: Settings,
    spec: dict,
    metrics: dict[str, dict[str, float]],
    tags: dict[str, str],
    params: dict[str, Any] | None = None,
    threshold: dict[str, Any] | None = None,
) -> str:
    params = LGBM_PARAMS if params is None else params
    test = metrics["test"]
    band = ""
    if threshold and threshold.get("band"):
        low, high = threshold["band"]
        band = f" Bootstrap band {low:.4f}–{high:.4f} (evaluation.md shows the cost curve)."
    return f"""# Model card: {settings.model_name}

**Purpose.** Score card-not-present transactions for fraud at authorisation time; decline when
the calibrated score is at or above {spec["threshold"]:.4f}.

**Training data.** Synthetic transactions from {spec["train_window"][0]} to
{spec["train_window"][1]} (data version `{tags["data_hash"]}`), labelled by chargebacks that had
arrived by {spec["clock"]}. Time-based split: train / validation / test by day.

**Features.** Feast feature service `{spec["feature_service"]}`, transform
`{spec["transform_version"]}`; model inputs in this order: {", ".join(spec["feature_order"])}.

**Model.** LightGBM ({spec["num_trees"]} trees, fraud up-weighted ×
{params.get("scale_pos_weight", 1.0):.0f}), Platt-calibrated on the validation split, exported to
ONNX (parity: {spec["parity"]["share_rows_differing"]:.2%} of test rows differ by more
than 1e-4, decisions agree on {spec["parity"]["decision_agreement"]:.3%}).

**Decision threshold.** Chosen on validation to minimise the cost expected under the calibrated
scores: a missed fraud costs its amount, a false decline costs
${settings.false_decline_cost:.2f}.{band}

**Test performance.** PR-AUC {test["pr_auc"]:.3f}; recall at 1 % FPR
{test["recall_at_1pct_fpr"]:.3f}; at the threshold precision {test["precision"]:.3f}, recall
{test["recall"]:.3f}; expected cost {test["expected_cost_per_1k"]:.1f} per 1,000 transactions;
Brier {test["brier"]:.5f}.

**Limits.** Trained on synthetic data; slices with few frauds are reported without PR-AUC.
Performance must be re-checked once live labels mature (chargebacks arrive days later).

**Lineage.** git `{tags["git_commit"]}`, feature service `{tags["feature_service"]}`.
"""


# --- I/O: Feast -----------------------------------------------------------------------------


def service_features(settings: Settings, feature_service: str) -> list[str]:
    """The stored features a feature service serves, in the service's order."""
    from features.store import open_store

    service = open_store(settings).get_feature_service(feature_service)
    return [f.name for projection in service.feature_view_projections for f in projection.features]


def join_features(
    settings: Settings, entities: pd.DataFrame, feature_service: str
) -> pd.DataFrame:
    """Point-in-time join of ``entities`` through one feature service, ordered by ``txn_id``.

    Training and the promotion gates' holdout both go through here, so a model is judged on
    features built exactly the way it was trained on them.
    """
    from features.store import open_store

    store = open_store(settings)
    service = store.get_feature_service(feature_service)
    joined = store.get_historical_features(entity_df=entities, features=service).to_df()
    joined = joined.sort_values("txn_id").reset_index(drop=True)
    if len(joined) != len(entities):
        raise RuntimeError(
            f"point-in-time join returned {len(joined)} rows for {len(entities)} transactions"
        )
    return joined


def build_training_set(
    settings: Settings,
    clock: pd.Timestamp,
    feature_service: str | None = None,
    window: tuple[pd.Timestamp, pd.Timestamp] | None = None,
) -> TrainingSet:
    """Point-in-time correct training set through the feature service (default: settings')."""
    feature_service = feature_service or settings.feature_service
    start, end = window or training_window(settings, clock)
    labels = read_labels(settings, as_of=clock)
    entities = entity_frame(read_raw(settings, "transactions"), labels, start, end)
    joined = join_features(settings, entities, feature_service)
    joined["split"] = split_by_time(joined)
    feature_order = model_features(service_features(settings, feature_service))
    return TrainingSet(joined, model_matrix(joined, feature_order), feature_order)


# --- stages: each reads and writes the run directory -----------------------------------------


def start_run(
    settings: Settings, reason: str = "manual", clock: pd.Timestamp | None = None
) -> TrainingRun:
    """Open ``<home>/training/<UTC stamp>/`` and fix the run's parameters in ``run.json``."""
    clock = read_clock(settings) if clock is None else clock
    start, end = training_window(settings, clock)  # fails early when history is too short
    now = pd.Timestamp.now(tz="UTC")
    root = settings.training_dir
    root.mkdir(parents=True, exist_ok=True)
    directory = root / now.strftime("%Y%m%dT%H%M%S%fZ")
    directory.mkdir()
    run = TrainingRun(
        directory=directory,
        created=now.isoformat(),
        reason=reason,
        clock=clock.isoformat(),
        train_window=(start.isoformat(), end.isoformat()),
        feature_service=settings.feature_service,
        lgbm_params=lgbm_params(settings),
        num_boost_round=settings.train_num_boost_round,
    )
    run.save()
    _prune_runs(root, keep=KEEP_RUNS, current=directory)
    return run


def _prune_runs(root: Path, keep: int, current: Path) -> None:
    """Delete all but the newest ``keep`` run directories (registered runs live in MLflow)."""
    runs = sorted(p for p in root.iterdir() if p.is_dir() and (p / RUN_FILE).exists())
    for old in runs[:-keep]:
        if old != current:
            shutil.rmtree(old, ignore_errors=True)


def validate_raw_data(settings: Settings, run: TrainingRun) -> validation.ValidationResult:
    """Great Expectations on the raw feed of the training window; raises when it fails."""
    start, end = run.window
    result = validation.validate_raw_window(settings, start, end)
    _record_validation(run, result)
    if not result.passed:
        raise validation.DataValidationError([result])
    return result


def write_training_set(settings: Settings, run: TrainingRun) -> TrainingSet:
    """Join the training set through the run's feature service, validate it, persist it.

    The set is written even when its suite fails, so a person can open the rows that broke it;
    nothing after this stage runs then.
    """
    ts = build_training_set(settings, pd.Timestamp(run.clock), run.feature_service, run.window)
    ts.frame.to_parquet(run.path(TRAINING_SET_FILE), index=False)
    y = ts.frame["label"].to_numpy()
    meta = {
        "feature_service": run.feature_service,
        "feature_order": ts.feature_order,
        "rows": len(ts.frame),
        "splits": {
            name: {"rows": int(mask.sum()), "frauds": int(y[mask].sum())}
            for name in ("train", "valid", "test")
            for mask in [(ts.frame["split"] == name).to_numpy()]
        },
        "data_hash": frame_hash(ts.frame[[*REQUEST_COLUMNS, "label"]]),
    }
    run.path(TRAINING_SET_META).write_text(json.dumps(meta, indent=2))
    result = validation.validate_training_set(ts.frame, settings.max_amount)
    _record_validation(run, result)
    if not result.passed:
        raise validation.DataValidationError([result])
    return ts


def _record_validation(run: TrainingRun, result: validation.ValidationResult) -> None:
    path = run.path(VALIDATION_FILE)
    recorded = json.loads(path.read_text()) if path.exists() else {}
    recorded[result.dataset] = {**asdict(result), "summary": result.summary()}
    path.write_text(json.dumps(recorded, indent=2))


def read_training_set(run: TrainingRun) -> TrainingSet:
    """The persisted training set, with the model matrix rebuilt by the shared transform."""
    meta = json.loads(run.path(TRAINING_SET_META).read_text())
    frame = pd.read_parquet(run.path(TRAINING_SET_FILE))
    order = list(meta["feature_order"])
    return TrainingSet(frame, model_matrix(frame, order), order)


def _parts(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return {name: (frame["split"] == name).to_numpy() for name in ("train", "valid", "test")}


def train(settings: Settings, run: TrainingRun) -> FittedModel:
    """LightGBM on the train split, Platt calibration and the cost-optimal threshold on valid.

    The threshold minimises the cost expected under the calibrated validation scores
    (``model.decision.choose_robust_threshold``): the exact minimum of the labels' cost curve
    follows a handful of frauds and moved ×6 between retrains days apart.
    """
    ts = read_training_set(run)
    y = ts.frame["label"].to_numpy()
    parts = _parts(ts.frame)
    booster = fit(
        ts.x[parts["train"]],
        y[parts["train"]],
        ts.x[parts["valid"]],
        y[parts["valid"]],
        ts.feature_order,
        settings.train_threads,
        settings.seed,
        params=run.lgbm_params,
        num_boost_round=run.num_boost_round,
    )
    raw_valid = booster.predict(ts.x[parts["valid"]], num_threads=1)
    calibration = export.fit_platt(raw_valid, y[parts["valid"]])
    valid_scores = export.native_scores(booster, calibration, ts.x[parts["valid"]])
    choice = decision.choose_robust_threshold(
        y[parts["valid"]],
        valid_scores,
        ts.frame["amount"].to_numpy()[parts["valid"]],
        settings.false_decline_cost,
        seed=settings.seed,
    )
    threshold = choice.threshold
    booster.save_model(str(run.path(NATIVE_FILE)))
    run.path(FIT_FILE).write_text(
        json.dumps(
            {
                "calibration": {"method": "platt", "a": calibration.a, "b": calibration.b},
                "threshold": threshold,
                "threshold_choice": {
                    "method": THRESHOLD_METHOD,
                    "band": list(choice.band),
                    "band_quantiles": list(decision.BAND_QUANTILES),
                    "bootstrap_samples": choice.samples,
                    "label_optimum": choice.label_optimum,
                    "split": "valid",
                },
                "best_iteration": booster.best_iteration,
                "num_trees": booster.num_trees(),
                "false_decline_cost": settings.false_decline_cost,
            },
            indent=2,
        )
    )
    return FittedModel(booster, calibration, threshold)


def read_fitted(run: TrainingRun) -> tuple[FittedModel, dict[str, Any]]:
    import lightgbm as lgb

    fitted = json.loads(run.path(FIT_FILE).read_text())
    booster = lgb.Booster(model_file=str(run.path(NATIVE_FILE)))
    cal = fitted["calibration"]
    return (
        FittedModel(
            booster, export.PlattCalibration(float(cal["a"]), float(cal["b"])), fitted["threshold"]
        ),
        fitted,
    )


def evaluate(settings: Settings, run: TrainingRun) -> dict[str, Any]:
    """Metrics, slices, ONNX export and parity, latency; writes the bundle. Returns evaluation.

    Raises when the ONNX graph does not match LightGBM: such a model must not be registered.
    """
    import onnx

    ts = read_training_set(run)
    model, fitted = read_fitted(run)
    frame, x, order = ts.frame, ts.x, ts.feature_order
    y = frame["label"].to_numpy()
    amount = frame["amount"].to_numpy()
    parts = _parts(frame)
    test = parts["test"]
    scores = export.native_scores(model.booster, model.calibration, x)
    metrics = {
        name: evaluation.classification_metrics(
            y[mask], scores[mask], amount[mask], model.threshold, settings.false_decline_cost
        )
        for name, mask in parts.items()
    }
    slices = evaluation.slice_metrics(
        slice_frame(frame[test], x[test], order, scores[test]),
        SLICES,
        model.threshold,
        settings.false_decline_cost,
    )

    onnx_model = export.to_onnx(model.booster, model.calibration, len(order))
    session = export.onnx_session(onnx_model.SerializeToString(), threads=1)
    parity = export.parity(model.booster, model.calibration, session, x[test], model.threshold)
    if not export.parity_ok(parity):
        raise RuntimeError(f"ONNX export does not match LightGBM: {parity}")
    latency = single_row_latency_us(session, x[test])

    meta = json.loads(run.path(TRAINING_SET_META).read_text())
    validated = json.loads(run.path(VALIDATION_FILE).read_text())
    tags = {
        "git_commit": git_commit(),
        "data_hash": meta["data_hash"],
        # which generated world the training data came from (a new seed or size is another)
        "world_hash": read_meta(settings)["transactions_hash"],
        "feature_service": run.feature_service,
        "transform_version": transform_spec()["version"],
        "data_validation": "; ".join(v["summary"] for v in validated.values()),
        "training_run": run.directory.name,
        "retrain_reason": run.reason,
    }
    start, end = run.window
    spec = {
        "model_name": settings.model_name,
        "feature_service": run.feature_service,
        "feature_order": order,
        "transform_version": tags["transform_version"],
        "threshold": model.threshold,
        "onnx_input": export.ONNX_INPUT,
        "onnx_output": export.ONNX_OUTPUT,
        "calibration": fitted["calibration"],
        "train_window": [start.isoformat(), end.isoformat()],
        "clock": run.clock,
        "num_trees": model.booster.num_trees(),
        "parity": parity,
        "false_decline_cost": settings.false_decline_cost,
    }
    report = {
        "metrics": metrics,
        "slices": slices,
        "parity": parity,
        "latency": latency,
        "baseline": decision_baseline(metrics, y),
        "threshold": threshold_report(
            y[parts["valid"]],
            scores[parts["valid"]],
            amount[parts["valid"]],
            settings.false_decline_cost,
            model.threshold,
            fitted.get("threshold_choice", {}),
        ),
    }

    bundle = run.bundle
    shutil.rmtree(bundle, ignore_errors=True)  # a retried stage starts from a clean bundle
    bundle.mkdir()
    onnx.save(onnx_model, bundle / ONNX_FILE)
    # the native model too: parity can be re-checked later (promotion gate, tests)
    shutil.copyfile(run.path(NATIVE_FILE), bundle / NATIVE_FILE)
    (bundle / SPEC_FILE).write_text(json.dumps(spec, indent=2))
    (bundle / "feature_order.json").write_text(json.dumps(order, indent=2))
    (bundle / "transform_spec.json").write_text(json.dumps(transform_spec(), indent=2))
    (bundle / "evaluation.json").write_text(json.dumps(report, indent=2))
    (bundle / "evaluation.md").write_text(
        evaluation_markdown(metrics, slices, report["threshold"])
    )
    (bundle / "model_card.md").write_text(
        model_card(settings, spec, metrics, tags, run.lgbm_params, report["threshold"])
    )
    reference = pd.DataFrame(x[parts["train"]], columns=order)
    reference["score"] = scores[parts["train"]]
    reference.sample(min(len(reference), 20_000), random_state=settings.seed).to_parquet(
        bundle / "reference.parquet", index=False
    )
    run.path(TAGS_FILE).write_text(json.dumps(tags, indent=2))
    return report


def model_environment() -> dict[str, Any]:
    """The environment MLflow records with the model (``conda.yaml``, ``requirements.txt``).

    Given whole, because with ``pip_requirements`` MLflow writes ``conda.yaml`` itself and pins
    the installed pip there: a uv environment has no pip, and every registration warned "Failed
    to resolve installed pip version". The packages are the same (MLflow adds its own pin, as it
    did); pip stays unpinned, as MLflow wrote it. Serving never builds this environment: it
    loads the ONNX file from the bundle with onnxruntime.
    """
    return {
        "name": "mlflow-env",
        "channels": ["conda-forge"],
        "dependencies": [f"python={platform.python_version()}", "pip", {"pip": ["onnxruntime"]}],
    }


def register(settings: Settings, run: TrainingRun, alias: str = CHALLENGER) -> str:
    """Log the run to MLflow, register its ONNX model and point ``alias`` at the new version."""
    import mlflow
    import onnx

    from model.registry import BUNDLE_SHA256_TAG, bundle_files, bundle_sha256, client

    if not (run.bundle / SPEC_FILE).exists():
        raise FileNotFoundError(f"{run.bundle} has no model bundle: run the evaluate stage first")
    # what every reader of the registered bundle (serving's cache first) checks its copy against
    digest = bundle_sha256(bundle_files(run.bundle))
    spec = json.loads((run.bundle / SPEC_FILE).read_text())
    report = json.loads((run.bundle / "evaluation.json").read_text())
    tags = json.loads(run.path(TAGS_FILE).read_text())
    fitted = json.loads(run.path(FIT_FILE).read_text())
    meta = json.loads(run.path(TRAINING_SET_META).read_text())
    clock = pd.Timestamp(run.clock)

    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_experiment(settings.experiment)
    with mlflow.start_run(run_name=f"train-{clock:%Y%m%d-%H%M}") as active:
        mlflow.set_tags(tags)
        mlflow.log_params(
            {
                **{k: v for k, v in run.lgbm_params.items() if k != "verbose"},
                "num_boost_round": run.num_boost_round,
                "best_iteration": fitted["best_iteration"],
                "threshold": spec["threshold"],
                "false_decline_cost": spec["false_decline_cost"],
                "train_start": spec["train_window"][0],
                "train_end": spec["train_window"][1],
                "n_train": meta["splits"]["train"]["rows"],
            }
        )
        mlflow.log_metrics(
            {
                f"{split}_{k}": v
                for split, m in report["metrics"].items()
                for k, v in m.items()
                if v is not None and np.isfinite(v)
            }
        )
        mlflow.log_metrics(
            {**{f"parity_{k}": v for k, v in report["parity"].items()}, **report["latency"]}
        )
        mlflow.log_artifacts(str(run.bundle), artifact_path=BUNDLE_DIR)
        for name in GATE_REPORT_FILES:  # the verdict that let this run through, when gated
            if run.path(name).exists():
                mlflow.log_artifact(str(run.path(name)), artifact_path="gates")
        info = mlflow.onnx.log_model(
            onnx.load(str(run.bundle / ONNX_FILE)),
            name="model",
            registered_model_name=settings.model_name,
            conda_env=model_environment(),  # explicit: no time spent inferring requirements
            onnx_execution_providers=["CPUExecutionProvider"],
        )
        run_id = active.info.run_id
    version = str(info.registered_model_version)
    registry = client(settings)
    version_tags = {
        **tags,
        "threshold": f"{spec['threshold']:.6f}",
        "run_id": run_id,
        BUNDLE_SHA256_TAG: digest,
    }
    for key, value in version_tags.items():
        registry.set_model_version_tag(settings.model_name, version, key, value)
    registry.set_registered_model_alias(settings.model_name, alias, version)
    run.path(REGISTERED_FILE).write_text(
        json.dumps({"version": version, "run_id": run_id, "alias": alias}, indent=2)
    )
    return version


def registered_version(run: TrainingRun) -> str | None:
    path = run.path(REGISTERED_FILE)
    return json.loads(path.read_text())["version"] if path.exists() else None


# --- wiring ---------------------------------------------------------------------------------


def run(
    settings: Settings,
    promote: bool = True,
    progress: Progress | None = None,
    reason: str = "manual",
) -> str:
    """Every stage in sequence; returns the registered version.

    With ``promote`` the version becomes the champion at once (bootstrap: there is nothing to
    gate against); without, it is registered as the challenger for ``fraudlab promote``.
    """
    progress = progress or (lambda _title: nullcontext())
    current = start_run(settings, reason=reason)
    start, end = current.window
    with progress(
        f"validating the raw feed {start:%Y-%m-%d} → {end:%Y-%m-%d} with Great Expectations"
    ):
        validate_raw_data(settings, current)
    with progress(
        f"building the point-in-time training set through Feast ({current.feature_service})"
    ):
        ts = write_training_set(settings, current)
    train_rows = ts.frame["split"] == "train"
    with progress(
        f"training LightGBM on {int(train_rows.sum()):,} transactions "
        f"({int(ts.frame['label'][train_rows].sum())} frauds), calibrating, choosing the threshold"
    ):
        train(settings, current)
    with progress("evaluating, exporting to ONNX and checking parity with LightGBM"):
        report = evaluate(settings, current)
    alias = CHAMPION if promote else CHALLENGER
    with progress("logging the run to MLflow and registering the model"):
        version = register(settings, current, alias)

    m, latency = report["metrics"]["test"], report["latency"]
    threshold = json.loads(current.path(FIT_FILE).read_text())["threshold"]
    print(
        f"model {settings.model_name} v{version}: test PR-AUC {m['pr_auc']:.3f}, "
        f"recall@1%FPR {m['recall_at_1pct_fpr']:.3f}, threshold {threshold:.4f}, "
        f"cost/1k {m['expected_cost_per_1k']:.1f}, ONNX p99 {latency['onnx_p99_us']:.0f} µs"
        f" → alias '{alias}' (run directory {current.directory})"
    )
    return version
