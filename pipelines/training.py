"""Training: point-in-time training set → LightGBM → calibration → threshold → ONNX → MLflow.

Owns: the training stages and their wiring (``run``). Stages are small functions with their
inputs as arguments; ``run`` does the I/O (Feast, MLflow, files).
Must not: define features (Feast repo), transform them (``features.transforms``), or compute
metrics differently from ``pipelines.evaluation``.

The split is by time, never random: fraud patterns and merchants drift, and a random split
would let the model peek at the future. Labels are chargebacks that had arrived by the stack's
clock; transactions younger than ``label_maturity_days`` are left out because their chargebacks
may still be on their way (training on them would teach the model that recent fraud is legit).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.transforms import MODEL_FEATURES, build_model_inputs, to_matrix, transform_spec
from fraudlab.settings import REPO_ROOT, Settings
from pipelines import evaluation, export, validation
from pipelines.data import (
    REQUEST_COLUMNS,
    epoch_seconds,
    frame_hash,
    read_clock,
    read_labels,
    read_meta,
    read_raw,
)
from pipelines.registry import (
    BUNDLE_DIR,
    CHALLENGER,
    CHAMPION,
    NATIVE_FILE,
    ONNX_FILE,
    SPEC_FILE,
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

Progress = Callable[[str], AbstractContextManager[None]]


@dataclass
class TrainingSet:
    frame: pd.DataFrame  # request columns, stored features, label, split
    x: np.ndarray
    feature_order: list[str]


# --- stages -------------------------------------------------------------------------------


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
):
    import lightgbm as lgb

    params = {
        **LGBM_PARAMS,
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
        NUM_BOOST_ROUND,
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


def slice_frame(
    frame: pd.DataFrame, x: np.ndarray, feature_order: list[str], score: np.ndarray
) -> pd.DataFrame:
    age = x[:, feature_order.index("account_age_days")]
    return pd.DataFrame(
        {
            "y": frame["label"].to_numpy(),
            "score": score,
            "amount": frame["amount"].to_numpy(),
            "merchant_category": frame["merchant_category"].fillna("unknown").to_numpy(),
            "region": frame["home_region"].fillna("unknown").to_numpy(),
            "account_age": evaluation.account_age_bucket(age),
        }
    )


SLICES = {
    "merchant_category": "merchant_category",
    "region": "region",
    "account_age": "account_age",
}


def git_commit() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def evaluation_markdown(
    metrics: dict[str, dict[str, float]], slices: dict[str, dict[str, dict[str, float]]]
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
    return "\n".join(lines) + "\n"


def model_card(
    settings: Settings, spec: dict, metrics: dict[str, dict[str, float]], tags: dict[str, str]
) -> str:
    test = metrics["test"]
    return f"""# Model card: {settings.model_name}

**Purpose.** Score card-not-present transactions for fraud at authorisation time; decline when
the calibrated score is at or above {spec["threshold"]:.4f}.

**Training data.** Synthetic transactions from {spec["train_window"][0]} to
{spec["train_window"][1]} (data version `{tags["data_hash"]}`), labelled by chargebacks that had
arrived by {spec["clock"]}. Time-based split: train / validation / test by day.

**Features.** Feast feature service `{spec["feature_service"]}`, transform
`{spec["transform_version"]}`; model inputs in this order: {", ".join(spec["feature_order"])}.

**Model.** LightGBM ({spec["num_trees"]} trees, fraud up-weighted ×
{LGBM_PARAMS["scale_pos_weight"]:.0f}), Platt-calibrated on the validation split, exported to
ONNX (parity: {spec["parity"]["share_rows_differing"]:.2%} of test rows differ by more
than 1e-4, decisions agree on {spec["parity"]["decision_agreement"]:.3%}).

**Decision threshold.** Chosen on validation to minimise expected cost: a missed fraud costs its
amount, a false decline costs ${settings.false_decline_cost:.2f}.

**Test performance.** PR-AUC {test["pr_auc"]:.3f}; recall at 1 % FPR
{test["recall_at_1pct_fpr"]:.3f}; at the threshold precision {test["precision"]:.3f}, recall
{test["recall"]:.3f}; expected cost {test["expected_cost_per_1k"]:.1f} per 1,000 transactions;
Brier {test["brier"]:.5f}.

**Limits.** Trained on synthetic data; slices with few frauds are reported without PR-AUC.
Performance must be re-checked once live labels mature (chargebacks arrive days later).

**Lineage.** git `{tags["git_commit"]}`, feature service `{tags["feature_service"]}`.
"""


# --- wiring -------------------------------------------------------------------------------


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


def build_training_set(settings: Settings, clock: pd.Timestamp) -> TrainingSet:
    """Point-in-time correct training set through the feature service."""
    start, end = training_window(settings, clock)
    labels = read_labels(settings, as_of=clock)
    entities = entity_frame(read_raw(settings, "transactions"), labels, start, end)
    joined = join_features(settings, entities, settings.feature_service)
    joined["split"] = split_by_time(joined)
    feature_order = list(MODEL_FEATURES)
    return TrainingSet(joined, model_matrix(joined, feature_order), feature_order)


def run(settings: Settings, promote: bool = True, progress: Progress | None = None) -> str:
    """Train, evaluate, export and register one model; returns its registered version."""
    import mlflow
    import onnx

    progress = progress or (lambda _title: nullcontext())
    clock = read_clock(settings)
    with progress("building the point-in-time training set through Feast"):
        ts = build_training_set(settings, clock)
    with progress("validating data with Great Expectations"):
        # before fitting: a model trained on broken data must never reach the registry
        start, end = training_window(settings, clock)
        checked = validation.check_before_training(settings, ts.frame, start, end)
    frame, x, order = ts.frame, ts.x, ts.feature_order
    y = frame["label"].to_numpy()
    parts = {name: (frame["split"] == name).to_numpy() for name in ("train", "valid", "test")}

    with progress(
        f"training LightGBM on {parts['train'].sum():,} transactions "
        f"({int(y[parts['train']].sum())} frauds)"
    ):
        booster = fit(
            x[parts["train"]],
            y[parts["train"]],
            x[parts["valid"]],
            y[parts["valid"]],
            order,
            settings.train_threads,
            settings.seed,
        )

    with progress("calibrating, choosing the cost-optimal threshold, evaluating"):
        raw_valid = booster.predict(x[parts["valid"]], num_threads=1)
        calibration = export.fit_platt(raw_valid, y[parts["valid"]])
        scores = export.native_scores(booster, calibration, x)
        amount = frame["amount"].to_numpy()
        threshold = evaluation.choose_threshold(
            y[parts["valid"]],
            scores[parts["valid"]],
            amount[parts["valid"]],
            settings.false_decline_cost,
        )
        metrics = {
            name: evaluation.classification_metrics(
                y[mask], scores[mask], amount[mask], threshold, settings.false_decline_cost
            )
            for name, mask in parts.items()
        }
        test = parts["test"]
        slices = evaluation.slice_metrics(
            slice_frame(frame[test], x[test], order, scores[test]),
            SLICES,
            threshold,
            settings.false_decline_cost,
        )

    with progress("exporting to ONNX and checking parity with LightGBM"):
        onnx_model = export.to_onnx(booster, calibration, len(order))
        session = export.onnx_session(onnx_model.SerializeToString(), threads=1)
        parity = export.parity(booster, calibration, session, x[test], threshold)
        if not export.parity_ok(parity):
            raise RuntimeError(f"ONNX export does not match LightGBM: {parity}")
        latency = single_row_latency_us(session, x[test])

    tags = {
        "git_commit": git_commit(),
        "data_hash": frame_hash(frame[[*REQUEST_COLUMNS, "label"]]),
        "feature_service": settings.feature_service,
        "transform_version": transform_spec()["version"],
        "data_validation": "; ".join(r.summary() for r in checked),
    }
    spec = {
        "model_name": settings.model_name,
        "feature_service": settings.feature_service,
        "feature_order": order,
        "transform_version": tags["transform_version"],
        "threshold": threshold,
        "onnx_input": export.ONNX_INPUT,
        "onnx_output": export.ONNX_OUTPUT,
        "calibration": {"method": "platt", "a": calibration.a, "b": calibration.b},
        "train_window": [start.isoformat(), end.isoformat()],
        "clock": clock.isoformat(),
        "num_trees": booster.num_trees(),
        "parity": parity,
        "false_decline_cost": settings.false_decline_cost,
    }

    with progress("logging the run to MLflow and registering the model"):
        mlflow.set_tracking_uri(settings.tracking_uri)
        mlflow.set_experiment(settings.experiment)
        with mlflow.start_run(run_name=f"train-{clock:%Y%m%d-%H%M}") as active:
            mlflow.set_tags(tags)
            mlflow.log_params(
                {
                    **{k: v for k, v in LGBM_PARAMS.items() if k != "verbose"},
                    "num_boost_round": NUM_BOOST_ROUND,
                    "best_iteration": booster.best_iteration,
                    "threshold": threshold,
                    "false_decline_cost": settings.false_decline_cost,
                    "train_start": start.isoformat(),
                    "train_end": end.isoformat(),
                    "n_train": int(parts["train"].sum()),
                }
            )
            mlflow.log_metrics(
                {
                    f"{split}_{k}": v
                    for split, m in metrics.items()
                    for k, v in m.items()
                    if np.isfinite(v)
                }
            )
            mlflow.log_metrics({**{f"parity_{k}": v for k, v in parity.items()}, **latency})
            with tempfile.TemporaryDirectory() as tmp:
                bundle = Path(tmp)
                onnx.save(onnx_model, bundle / ONNX_FILE)
                # the native model too: parity can be re-checked later (promotion gate, tests)
                booster.save_model(str(bundle / NATIVE_FILE))
                (bundle / SPEC_FILE).write_text(json.dumps(spec, indent=2))
                (bundle / "feature_order.json").write_text(json.dumps(order, indent=2))
                (bundle / "transform_spec.json").write_text(json.dumps(transform_spec(), indent=2))
                (bundle / "evaluation.json").write_text(
                    json.dumps(
                        {
                            "metrics": metrics,
                            "slices": slices,
                            "parity": parity,
                            "latency": latency,
                        },
                        indent=2,
                    )
                )
                (bundle / "evaluation.md").write_text(evaluation_markdown(metrics, slices))
                (bundle / "model_card.md").write_text(model_card(settings, spec, metrics, tags))
                reference = pd.DataFrame(x[parts["train"]], columns=order)
                reference["score"] = scores[parts["train"]]
                reference.sample(
                    min(len(reference), 20_000), random_state=settings.seed
                ).to_parquet(bundle / "reference.parquet", index=False)
                mlflow.log_artifacts(str(bundle), artifact_path=BUNDLE_DIR)
            info = mlflow.onnx.log_model(
                onnx_model,
                name="model",
                registered_model_name=settings.model_name,
                pip_requirements=["onnxruntime"],
                onnx_execution_providers=["CPUExecutionProvider"],
            )
            run_id = active.info.run_id
        version = str(info.registered_model_version)
        client = mlflow.MlflowClient(settings.tracking_uri)
        for key, value in {**tags, "threshold": f"{threshold:.6f}", "run_id": run_id}.items():
            client.set_model_version_tag(settings.model_name, version, key, value)
        client.set_registered_model_alias(
            settings.model_name, CHAMPION if promote else CHALLENGER, version
        )

    m = metrics["test"]
    print(
        f"model {settings.model_name} v{version}: test PR-AUC {m['pr_auc']:.3f}, "
        f"recall@1%FPR {m['recall_at_1pct_fpr']:.3f}, threshold {threshold:.4f}, "
        f"cost/1k {m['expected_cost_per_1k']:.1f}, ONNX p99 {latency['onnx_p99_us']:.0f} µs"
        f" → alias '{CHAMPION if promote else CHALLENGER}'"
    )
    return version
