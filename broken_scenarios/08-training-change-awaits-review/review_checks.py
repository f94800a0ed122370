"""Behavioural checks of a training-pipeline branch, run with the branch checked out as cwd.

Fed to ``python -`` by the scenario's verify (so no file of it lands in the checkout), it imports
the branch's own ``pipelines.training`` and runs its real stages (``start_run``, ``train``,
``evaluate``) on a small synthetic training set written into a throwaway run directory — no
Feast, no MLflow, seconds. Its last stdout line is JSON: {check: {"ok": bool, "detail": str}}.

- runs:       train and evaluate work on a complete training set;
- fitting:    relabelling some test days changes nothing ``train`` fits (trees, calibration,
              threshold), and relabelling some validation days changes no tree of the boosting
              path both fits share (validation may only move early stopping, calibration and
              threshold);
- evaluation: the test metrics and slice metrics ``evaluate`` reports equal the same metrics
              recomputed on the test days alone with the fitted model;
- inputs:     ``model_matrix`` refuses a frame missing any input column, naming that column.
"""

from __future__ import annotations

import json
import math
import tempfile
import traceback
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS: dict[str, dict[str, object]] = {}
STATE: dict[str, object] = {}


def record(name, check) -> None:
    try:
        ok, detail = check()
    except Exception:  # noqa: BLE001 - any crash is a failed check with its traceback
        ok, detail = False, traceback.format_exc(limit=8)
    RESULTS[name] = {"ok": bool(ok), "detail": str(detail)}


def synthetic_frame(seed: int = 11, days: int = 40, per_day: int = 200) -> pd.DataFrame:
    """Request columns, every stored feature the branch's transform reads, a label with a
    learnable signal (amount, new device, risky category, geo mismatch), sorted by txn_id."""
    from features.transforms import MERCHANT_CATEGORIES, REGIONS, STORED_FEATURES
    from pipelines.data import REQUEST_COLUMNS

    rng = np.random.default_rng(seed)
    n = days * per_day
    day = np.repeat(np.arange(days), per_day)
    offset = np.sort(rng.integers(0, 86_400, n).reshape(days, per_day), axis=1).ravel()
    ts = pd.Timestamp("2026-03-01", tz="UTC") + pd.to_timedelta(day * 86_400 + offset, unit="s")
    epoch = (ts - pd.Timestamp(0, tz="UTC")).total_seconds().to_numpy()
    category = rng.choice(np.array(MERCHANT_CATEGORIES, dtype=object), n)
    region = rng.choice(np.array(REGIONS, dtype=object), n)
    abroad = rng.random(n) < 0.1
    ip_region = np.where(abroad, rng.choice(np.array(REGIONS, dtype=object), n), region)
    amount = np.round(rng.lognormal(3.5, 1.0, n), 2)
    new_device = rng.random(n) < 0.12
    risky = np.isin(category, ["digital_goods", "gift_cards", "electronics", "gambling"])
    logit = (
        -5.0
        + 2.5 * (amount > 120)
        + 3.0 * new_device
        + 1.5 * risky
        + 2.0 * (ip_region != region)
        + rng.normal(0.0, 0.5, n)
    )
    label = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int8)

    frame = pd.DataFrame(
        {
            "txn_id": [f"t{i:07d}" for i in range(n)],
            "event_timestamp": ts,
            "user_id": rng.integers(1, 900, n),
            "merchant_id": rng.integers(1, 150, n),
            "device_id": rng.integers(1, 3_000, n),
            "amount": amount,
            "channel": rng.choice(np.array(["app", "web"], dtype=object), n),
            "ip_region": ip_region,
        }
    )
    absent = [c for c in REQUEST_COLUMNS if c not in frame.columns]
    if absent:
        raise RuntimeError(f"the checks do not know how to make request columns {absent}")
    for name in STORED_FEATURES:
        if name == "merchant_category":
            frame[name] = category
        elif name == "home_region":
            frame[name] = region
        elif name.endswith("_ts"):
            horizon = 400 * 86_400 if "signup" in name else 3 * 86_400
            frame[name] = epoch - rng.uniform(60, horizon, n)
        elif "device" in name:
            frame[name] = np.where(new_device, 0.0, rng.integers(1, 30, n).astype(float))
        elif "rate" in name:
            frame[name] = rng.beta(1, 60, n) + 0.02 * risky
        else:
            frame[name] = np.round(rng.gamma(2.0, 3.0, n), 2)
    frame["label"] = label
    return frame


def differences(reported: dict, expected: dict, prefix: str = "") -> list[str]:
    """Keys whose values differ (NaN equals NaN); nested dicts are walked."""
    out: list[str] = []
    for key in sorted(set(reported) | set(expected), key=str):
        a, b = reported.get(key), expected.get(key)
        where = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{where}.")
        elif a is None or b is None:
            out.append(f"{where} (only on one side)")
        elif isinstance(a, (int, float)) and isinstance(b, (int, float)):
            if not (
                (math.isnan(a) and math.isnan(b))
                or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
            ):
                out.append(f"{where}: reported {a:.6g}, recomputed {b:.6g}")
        elif a != b:
            out.append(f"{where}: reported {a!r}, recomputed {b!r}")
    return out


def main() -> None:
    from features.transforms import MODEL_FEATURES, STORED_FEATURES
    from foundation.settings import Settings
    from model import evaluation, export
    from pipelines import training
    from pipelines.data import meta_path

    home = Path(tempfile.mkdtemp(prefix="checks-"))
    settings = Settings(_env_file=None, home=home)
    frame = synthetic_frame()
    frame["split"] = training.split_by_time(frame)
    order = list(MODEL_FEATURES)
    cost = settings.false_decline_cost
    first = frame["event_timestamp"].min().floor("D")
    last = frame["event_timestamp"].max().ceil("D")
    # start_run derives the training window from the data's start and the clock.
    meta_path(settings).parent.mkdir(parents=True, exist_ok=True)
    warmup = pd.Timedelta(days=training.WARMUP_DAYS)
    # evaluate() tags the model with the world it was trained on (meta's transactions_hash).
    world = {"start": (first - warmup).isoformat(), "transactions_hash": "synthetic"}
    meta_path(settings).write_text(json.dumps(world))
    clock = last + pd.Timedelta(days=settings.label_maturity_days)

    def new_run(data: pd.DataFrame):
        """A run directory holding ``data`` as its training set, as write_training_set leaves it."""
        run = training.start_run(settings, reason="review checks", clock=clock)
        data.to_parquet(run.path(training.TRAINING_SET_FILE), index=False)
        meta = {
            "feature_service": run.feature_service,
            "feature_order": order,
            "rows": len(data),
            "data_hash": "synthetic",
        }
        run.path(training.TRAINING_SET_META).write_text(json.dumps(meta))
        run.path(training.VALIDATION_FILE).write_text("{}")
        return run

    def runs():
        run = new_run(frame)
        fitted = training.train(settings, run)
        report = training.evaluate(settings, run)
        STATE.update(run=run, fitted=fitted, report=report)
        test = report["metrics"]["test"]
        ok = 0.0 < fitted.threshold <= 1.0 and "pr_auc" in test and bool(report["slices"])
        return ok, f"threshold {fitted.threshold:.4f}, test PR-AUC {test.get('pr_auc')}"

    def relabelled(split: str, seed: int) -> pd.DataFrame:
        other = frame.copy()
        rows = np.flatnonzero((other["split"] == split).to_numpy())
        pick = np.random.default_rng(seed).choice(rows, size=len(rows) // 4, replace=False)
        other.loc[pick, "label"] = (1 - other.loc[pick, "label"]).astype(np.int8)
        return other

    def best(booster) -> int:
        return int(booster.best_iteration or booster.num_trees())

    def fitting():
        if "fitted" not in STATE:
            return False, "the stages did not run on a complete training set"
        fitted = STATE["fitted"]
        x = training.model_matrix(frame, order)
        problems = []
        moved = training.train(settings, new_run(relabelled("test", 1)))
        if not np.array_equal(
            fitted.booster.predict(x, raw_score=True), moved.booster.predict(x, raw_score=True)
        ):
            problems.append("the trees change when only test-day labels change")
        if fitted.calibration != moved.calibration:
            problems.append("the calibration changes when only test-day labels change")
        if fitted.threshold != moved.threshold:
            problems.append("the threshold changes when only test-day labels change")
        moved = training.train(settings, new_run(relabelled("valid", 2)))
        k = min(best(fitted.booster), best(moved.booster))
        if not np.array_equal(
            fitted.booster.predict(x, raw_score=True, num_iteration=k),
            moved.booster.predict(x, raw_score=True, num_iteration=k),
        ):
            problems.append(f"the first {k} trees change when only validation-day labels change")
        return not problems, "; ".join(problems) or "held-out labels move nothing they must not"

    def evaluation_contract():
        if "report" not in STATE:
            return False, "the stages did not run on a complete training set"
        report = STATE["report"]
        model, _ = training.read_fitted(STATE["run"])
        x = training.model_matrix(frame, order)
        y = frame["label"].to_numpy()
        amount = frame["amount"].to_numpy()
        test = (frame["split"] == "test").to_numpy()
        scores = export.native_scores(model.booster, model.calibration, x)
        expected = evaluation.classification_metrics(
            y[test], scores[test], amount[test], model.threshold, cost
        )
        expected_slices = evaluation.slice_metrics(
            training.slice_frame(frame[test], x[test], order, scores[test]),
            training.SLICES,
            model.threshold,
            cost,
        )
        problems = differences(dict(report["metrics"].get("test", {})), expected)[:4]
        problems += [
            f"slices: {d}" for d in differences(dict(report["slices"]), expected_slices)[:4]
        ]
        return not problems, "; ".join(problems) or "test and slice metrics are the test days'"

    def inputs():
        training.model_matrix(frame, order)  # a complete frame must pass
        names = [*STORED_FEATURES, "amount", "channel", "ip_region", "event_timestamp"]
        problems = []
        for name in names:
            try:
                training.model_matrix(frame.drop(columns=[name]), order)
            except Exception as exc:  # noqa: BLE001 - any clear error will do
                if name not in str(exc):
                    problems.append(f"{name}: the error does not name it ({type(exc).__name__})")
            else:
                problems.append(f"{name}: accepted without it")
        detail = "; ".join(problems[:6]) or f"{len(names)} missing columns refused by name"
        return not problems, detail

    record("runs", runs)
    record("fitting", fitting)
    record("evaluation", evaluation_contract)
    record("inputs", inputs)


if __name__ == "__main__":
    try:
        main()
    except Exception:  # noqa: BLE001 - the frame or an import failed: every check fails
        failure = traceback.format_exc(limit=8)
        for name in ("runs", "fitting", "evaluation", "inputs"):
            RESULTS.setdefault(name, {"ok": False, "detail": failure})
    print("\n" + json.dumps(RESULTS))
