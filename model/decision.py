"""The decision rule and the cost model: when a score declines, and what a decision costs.

Owns: the one rule every side applies to a score (decline when ``score >= threshold``), the
cost model (a missed fraud costs its amount, the chargeback; declining a legitimate customer
costs a fixed friction: a support call, a lost basket, churn risk) and the threshold that
minimises that cost. Training chooses the threshold with it, serving decides with it, the gates
and the monitors count declines with it: a change here changes all of them together.

Must not: read files, talk to MLflow, or know about features.
"""

from __future__ import annotations

from typing import Literal, overload

import numpy as np

Decision = Literal["decline", "approve"]
DECISIONS: tuple[Decision, ...] = ("decline", "approve")


@overload
def decline(score: float, threshold: float) -> bool: ...
@overload
def decline(score: np.ndarray, threshold: float) -> np.ndarray: ...
def decline(score, threshold):
    """True where the model declines: the score reaches the model's own threshold."""
    if isinstance(score, np.ndarray):
        return score >= threshold
    return bool(score >= threshold)


def decide(score: float, threshold: float) -> Decision:
    """The served decision for one score."""
    return "decline" if decline(score, threshold) else "approve"


def expected_cost(
    y: np.ndarray, declined: np.ndarray, amount: np.ndarray, false_decline_cost: float
) -> float:
    """Total cost of a set of decisions: missed fraud amounts plus false-decline friction."""
    y = np.asarray(y, dtype=bool)
    declined = np.asarray(declined, dtype=bool)
    missed = np.asarray(amount, dtype=float)[y & ~declined].sum()
    return float(missed + false_decline_cost * np.sum(~y & declined))


def choose_threshold(
    y: np.ndarray, score: np.ndarray, amount: np.ndarray, false_decline_cost: float
) -> float:
    """The score threshold (decline when score >= t) that minimises expected cost.

    Evaluated exactly at every distinct score, in one sorted pass.
    """
    y = np.asarray(y, dtype=bool)
    score = np.asarray(score, dtype=float)
    amount = np.asarray(amount, dtype=float)
    order = np.argsort(-score, kind="stable")
    s, yy, aa = score[order], y[order], amount[order]
    # declining the top-k: cost = fraud amount not in top-k + friction * legit in top-k
    caught = np.cumsum(np.where(yy, aa, 0.0))
    friction = false_decline_cost * np.cumsum(~yy)
    cost_k = (aa[yy].sum() - caught) + friction
    # only cut between distinct scores
    last_of_run = np.r_[s[1:] != s[:-1], True]
    candidates = np.flatnonzero(last_of_run)
    best = candidates[np.argmin(cost_k[candidates])]
    decline_none_cost = aa[yy].sum()
    if decline_none_cost <= cost_k[best]:
        return float(np.nextafter(s[0], np.inf)) if len(s) else 1.0
    return float(s[best])
