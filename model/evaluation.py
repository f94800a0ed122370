"""Metrics that suit a 1-in-200 problem, overall and per slice.

Owns: pure functions from (labels, scores, amounts) to numbers: PR-AUC, recall at a fixed
false-positive rate, expected cost (``model.decision``'s cost model), Brier score and
calibration error, and the same metrics per slice (``model.slices`` defines the slices). Used by training, the promotion gates
and the live-performance monitor alike, so "expected cost" means one thing everywhere.

Must not: read files, talk to MLflow, or know about features.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_curve

from model.decision import decline, expected_cost


def recall_at_fpr(y: np.ndarray, score: np.ndarray, fpr_target: float) -> float:
    """Highest recall reachable with a false-positive rate no above ``fpr_target``."""
    y = np.asarray(y, dtype=int)
    if y.min(initial=0) == y.max(initial=0):
        return float("nan")
    fpr, tpr, _ = roc_curve(y, score)
    ok = fpr <= fpr_target
    return float(tpr[ok].max()) if ok.any() else 0.0


def brier_score(y: np.ndarray, score: np.ndarray) -> float:
    """Mean squared difference between the score and the outcome (lower is better)."""
    y = np.asarray(y, dtype=int)
    return float(brier_score_loss(y, score)) if len(y) else float("nan")


def calibration_error(y: np.ndarray, score: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-count bins (robust when positives are rare)."""
    y = np.asarray(y, dtype=float)
    score = np.asarray(score, dtype=float)
    if len(y) == 0:
        return float("nan")
    order = np.argsort(score)
    err = 0.0
    for chunk in np.array_split(order, bins):
        if len(chunk):
            err += len(chunk) * abs(y[chunk].mean() - score[chunk].mean())
    return float(err / len(y))


def classification_metrics(
    y: np.ndarray,
    score: np.ndarray,
    amount: np.ndarray,
    threshold: float,
    false_decline_cost: float,
) -> dict[str, float]:
    """Every headline metric for one set of labelled scores at one threshold."""
    y = np.asarray(y, dtype=int)
    score = np.asarray(score, dtype=float)
    declined = decline(score, threshold)
    n, n_pos = len(y), int(y.sum())
    both_classes = 0 < n_pos < n
    tp = int(np.sum(declined & (y == 1)))
    cost = expected_cost(y, declined, amount, false_decline_cost)
    baseline = expected_cost(y, np.zeros(n, dtype=bool), amount, false_decline_cost)
    return {
        "n": float(n),
        "positives": float(n_pos),
        "pr_auc": float(average_precision_score(y, score)) if both_classes else float("nan"),
        "recall_at_1pct_fpr": recall_at_fpr(y, score, 0.01),
        "recall_at_0_1pct_fpr": recall_at_fpr(y, score, 0.001),
        "precision": float(tp / declined.sum()) if declined.any() else float("nan"),
        "recall": float(tp / n_pos) if n_pos else float("nan"),
        "decline_rate": float(declined.mean()) if n else float("nan"),
        "expected_cost": cost,
        "expected_cost_per_1k": float(cost / n * 1000) if n else float("nan"),
        "cost_saved_vs_no_model": float(baseline - cost),
        "brier": brier_score(y, score),
        "calibration_error": calibration_error(y, score),
    }


def slice_metrics(
    frame: pd.DataFrame,
    slices: Mapping[str, str],
    threshold: float,
    false_decline_cost: float,
    min_positives: int = 5,
) -> dict[str, dict[str, dict[str, float]]]:
    """Metrics per value of each slice column. ``frame`` has columns y, score, amount + slices.

    Slices with fewer than ``min_positives`` frauds report counts only (a PR-AUC over three
    positives is noise, and noise must not fail a gate).
    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, column in slices.items():
        out[name] = {}
        for value, part in frame.groupby(column, dropna=False, observed=True):
            if part["y"].sum() >= min_positives:
                out[name][str(value)] = classification_metrics(
                    part["y"].to_numpy(),
                    part["score"].to_numpy(),
                    part["amount"].to_numpy(),
                    threshold,
                    false_decline_cost,
                )
            else:
                out[name][str(value)] = {
                    "n": float(len(part)),
                    "positives": float(part["y"].sum()),
                }
    return out
