"""The decision rule and the cost model: when a score declines, and what a decision costs.

Owns: the one rule every side applies to a score (decline when ``score >= threshold``), the
cost model (a missed fraud costs its amount, the chargeback; declining a legitimate customer
costs a fixed friction: a support call, a lost basket, churn risk) and the threshold that
minimises that cost. Training chooses the threshold with it, serving decides with it, the gates
and the monitors count declines with it: a change here changes all of them together.

Must not: read files, talk to MLflow, or know about features.
"""

from __future__ import annotations

from dataclasses import dataclass
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


# --- the threshold training ships -----------------------------------------------------------
#
# ``choose_threshold`` minimises the cost the validation labels show. With a few dozen frauds
# in a validation split (their amounts heavy-tailed) that curve is a staircase whose lowest
# step sits wherever one large fraud happens to score: retrains days apart chose 0.018 and
# 0.108 (``bench/threshold_stability.py`` measures it). ``choose_robust_threshold`` minimises
# the cost *expected* under the calibrated scores instead: each row's label replaced by its
# calibrated fraud probability (what the labels average to, given a calibrated score), which
# uses every row rather than the few frauds. The calibration was fitted on the same split, so
# the labels still set the level; a bootstrap over rows, each resample's probabilities shifted
# (in logit) to its own fraud count, gives the band the choice could have landed in.

BOOTSTRAP_SAMPLES = 200
BAND_QUANTILES = (0.05, 0.95)


@dataclass(frozen=True)
class CostCurve:
    """Cost of declining ``score >= threshold``, for each candidate threshold.

    ``threshold`` ascends; the last candidate declines nothing (just above the highest score).
    """

    threshold: np.ndarray
    cost: np.ndarray
    decline_rate: np.ndarray

    def at(self, thresholds: np.ndarray) -> CostCurve:
        """The same curve read at ``thresholds`` (each declines what the first candidate at or
        above it declines: no score lies between them)."""
        t = np.asarray(thresholds, dtype=float)
        index = np.minimum(
            np.searchsorted(self.threshold, t, side="left"), len(self.threshold) - 1
        )
        return CostCurve(t, self.cost[index], self.decline_rate[index])


@dataclass(frozen=True)
class ThresholdChoice:
    """A chosen threshold, how sure it is, and the curves it was chosen from."""

    threshold: float  # minimum of ``expected``
    band: tuple[float, float]  # BAND_QUANTILES of the bootstrap optima
    label_optimum: float  # ``choose_threshold``'s exact minimum on the labels
    curve: CostCurve  # cost the labels show
    expected: CostCurve  # cost expected under the calibrated scores
    samples: int


def _sorted_curve(
    weight_fraud: np.ndarray,
    weight_legit: np.ndarray,
    s: np.ndarray,
    amount: np.ndarray,
    false_decline_cost: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For rows sorted by descending score ``s``: (index of the last row of each run of equal
    scores, the cost of declining up to it, the weight declined); the weights say how much of
    each row is fraud and how much legitimate (labels, probabilities or bootstrap counts)."""
    missed_total = float(np.sum(weight_fraud * amount))
    caught = np.cumsum(weight_fraud * amount)
    friction = false_decline_cost * np.cumsum(weight_legit)
    cut = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
    declined = np.cumsum(weight_fraud + weight_legit)[cut]
    return cut, missed_total - caught[cut] + friction[cut], declined


def _curve(
    fraud: np.ndarray, score: np.ndarray, amount: np.ndarray, false_decline_cost: float
) -> CostCurve:
    fraud = np.asarray(fraud, dtype=float)
    score = np.asarray(score, dtype=float)
    amount = np.asarray(amount, dtype=float)
    if not len(score):
        return CostCurve(np.array([1.0]), np.array([0.0]), np.array([0.0]))
    order = np.argsort(-score, kind="stable")
    s = score[order]
    cut, cost, declined = _sorted_curve(
        fraud[order], 1.0 - fraud[order], s, amount[order], false_decline_cost
    )
    nothing = float(np.nextafter(s[0], np.inf))
    missed_total = float(np.sum(fraud * amount))
    # the cuts run from the highest score down; "decline nothing" lies above them all
    return CostCurve(
        threshold=np.r_[nothing, s[cut]][::-1],
        cost=np.r_[missed_total, cost][::-1],
        decline_rate=np.r_[0.0, declined / len(s)][::-1],
    )


def cost_curve(
    y: np.ndarray, score: np.ndarray, amount: np.ndarray, false_decline_cost: float
) -> CostCurve:
    """The exact cost curve of labelled scores: one point per distinct score (declining it and
    everything above), and "decline nothing"."""
    return _curve(np.asarray(y, dtype=bool), score, amount, false_decline_cost)


def expected_cost_curve(
    score: np.ndarray, amount: np.ndarray, false_decline_cost: float
) -> CostCurve:
    """The cost curve expected when each calibrated score is its row's fraud probability."""
    return _curve(
        np.clip(np.asarray(score, dtype=float), 0.0, 1.0), score, amount, false_decline_cost
    )


def _lowest(thresholds: np.ndarray, cost: np.ndarray) -> float:
    """The threshold of least cost; among equal costs the highest (fewest declines)."""
    best = np.flatnonzero(cost <= cost.min())
    return float(thresholds[best[-1]])


def _shift_to(logit: np.ndarray, weight: np.ndarray, frauds: float) -> np.ndarray:
    """Probabilities ``sigmoid(logit + d)`` whose weighted sum is ``frauds`` (Newton on d)."""
    d = 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(logit + d)))
        gap = float(np.sum(weight * p)) - frauds
        slope = float(np.sum(weight * p * (1.0 - p)))
        if abs(gap) < 1e-6 * max(frauds, 1.0) or slope <= 0:
            break
        d -= float(np.clip(gap / slope, -2.0, 2.0))
    return 1.0 / (1.0 + np.exp(-(logit + d)))


def choose_robust_threshold(
    y: np.ndarray,
    score: np.ndarray,
    amount: np.ndarray,
    false_decline_cost: float,
    *,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> ThresholdChoice:
    """The threshold minimising the cost expected under calibrated ``score``s, with a band.

    ``score`` must be calibrated probabilities (the choice reads them as such); ``y`` sets the
    band: ``samples`` bootstrap resamples of the rows, each resample's probabilities shifted in
    logit until they add up to its frauds, each minimised the same way. Deterministic for a
    ``seed``; pure.
    """
    y = np.asarray(y, dtype=bool)
    score = np.asarray(score, dtype=float)
    amount = np.asarray(amount, dtype=float)
    labels = cost_curve(y, score, amount, false_decline_cost)
    expected = expected_cost_curve(score, amount, false_decline_cost)
    chosen = _lowest(expected.threshold, expected.cost)
    n = len(score)
    optima = [chosen]
    if n and samples > 0:
        rng = np.random.default_rng(seed)
        order = np.argsort(-score, kind="stable")
        s, yy, aa = score[order], y[order], amount[order]
        p = np.clip(s, 1e-9, 1 - 1e-9)
        logit = np.log(p) - np.log1p(-p)
        nothing = float(np.nextafter(s[0], np.inf))
        optima = []
        for _ in range(samples):
            weight = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
            frauds = float(np.sum(weight * yy))
            shifted = _shift_to(logit, weight, frauds) if frauds > 0 else np.zeros(n)
            cut, cost, _ = _sorted_curve(
                weight * shifted, weight * (1.0 - shifted), s, aa, false_decline_cost
            )
            thresholds = np.r_[nothing, s[cut]][::-1]  # ascending, as _lowest wants them
            costs = np.r_[float(np.sum(weight * shifted * aa)), cost][::-1]
            optima.append(_lowest(thresholds, costs))
    low, high = np.quantile(np.asarray(optima), BAND_QUANTILES)
    return ThresholdChoice(
        threshold=chosen,
        band=(float(low), float(high)),
        label_optimum=choose_threshold(y, score, amount, false_decline_cost),
        curve=labels,
        expected=expected,
        samples=samples if n else 0,
    )
