"""Live model performance once chargebacks arrive: the prediction log joined to the label feed.

Owns: joining scored transactions (prediction-log records, non-synthetic, fallback included:
a fallback decision is still a decision a customer got) to the chargebacks that had arrived by
the stack's clock, estimating how complete those labels can be at each transaction's age, and
judging recall and PR-AUC on the part whose labels are complete enough against the champion's
own test metrics. Writes ``performance.json`` and ``performance.html`` into the run folder, and
the run's numbers into the Evidently workspace (tab "performance", ``monitoring.gauges``).
Must not: compute a metric itself (``model.evaluation`` does, for training, gates and this
monitor alike), or look at a transaction's true outcome: labels come only from
``pipelines.data.read_labels`` as of the clock, and the raw transaction table is read for ids
and event times only.

Delayed labels, and how this monitor stays honest about them:

- A transaction is *matured* when it is older than ``Settings.label_maturity_days`` at the
  clock (training's rule: its label is final). The replay covers ``future_days`` (14 by
  default) and maturity is 21 days, so replayed traffic never matures while it runs.
- Expected label completeness: the share of eventual chargebacks that have arrived by a given
  age, from the label history (chargeback time − transaction time, over history transactions
  old enough that every chargeback within ``Settings.perf_label_horizon_days`` has arrived).
  Every record gets the completeness of its age.
- The *judged* part is the records whose expected completeness is at least
  ``Settings.perf_min_completeness`` (matured records always qualify). On it:
  recall among the frauds known so far is unbiased when a chargeback's delay does not depend on
  the score (delays come from the card network, not from our model); precision and PR-AUC are
  not — a fraud not yet charged back counts as a false positive — so both are also reported
  divided by the expected completeness (each arrived label stands for 1/c eventual ones; at
  every rank precision shrinks by c), and the adjusted PR-AUC is what is judged.
- Fewer than ``Settings.perf_min_positives`` known frauds in the judged part: no verdict
  (``insufficient_data``), whatever the numbers say.
- Status: ``alert`` when recall or adjusted PR-AUC is below the champion's test value by more
  than the alert drop (``perf_recall_alert_drop``, ``perf_pr_auc_alert_drop``), ``warn`` beyond
  the warn drop, else ``ok``.

The per-age table (``label_age``) shows everything, judged or not, with its completeness, so a
reader can tell a collapse in recent traffic from labels that simply are not in yet.

The judgement is pure (``compute_performance``: frames in, result out); ``run_performance``
does the I/O.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from foundation.settings import Settings
from model.evaluation import classification_metrics, slice_metrics
from model.record import PredictionRecord
from model.slices import SLICES, slice_frame
from monitoring import gauges, sources

Status = Literal["ok", "warn", "alert", "insufficient_data"]
_RANK: dict[str, int] = {"ok": 0, "warn": 1, "alert": 2}
DAY_S = 86_400.0
EVALUATION_FILE = "evaluation.json"
# Label-age buckets (days); the maturity age is added as an edge of its own.
AGE_EDGES_DAYS = (0.0, 1.0, 3.0, 7.0, 14.0)
COMPLETENESS_AGES_DAYS = (1, 3, 7, 14, 21, 30)
# Headline numbers kept per age bucket (the full metric set is in the judged part).
BUCKET_METRICS = ("recall", "precision", "pr_auc", "expected_cost")
N_EXAMPLES = 5


@dataclass(frozen=True)
class PerformancePolicy:
    """The judgement's knobs (``Settings.perf_*``, ``label_maturity_days``, cost model); their
    defaults live in the settings only, so a policy is built with ``from_settings``."""

    label_maturity_days: float
    min_completeness: float
    min_positives: int
    recall_warn_drop: float
    recall_alert_drop: float
    pr_auc_warn_drop: float
    pr_auc_alert_drop: float
    false_decline_cost: float

    @classmethod
    def from_settings(cls, settings: Settings) -> PerformancePolicy:
        return cls(
            label_maturity_days=float(settings.label_maturity_days),
            min_completeness=settings.perf_min_completeness,
            min_positives=settings.perf_min_positives,
            recall_warn_drop=settings.perf_recall_warn_drop,
            recall_alert_drop=settings.perf_recall_alert_drop,
            pr_auc_warn_drop=settings.perf_pr_auc_warn_drop,
            pr_auc_alert_drop=settings.perf_pr_auc_alert_drop,
            false_decline_cost=settings.false_decline_cost,
        )


@dataclass(frozen=True)
class LabelDelays:
    """Chargeback delays (days) seen in the label history: the label-completeness curve.

    ``completeness(age)`` is the share of eventual chargebacks (those within ``horizon_days``)
    that arrive within ``age`` days. Without any history, only the maturity rule is known:
    complete from ``label_maturity_days``, nothing before.
    """

    delay_days: np.ndarray
    horizon_days: float
    cohort_transactions: int = 0

    def completeness(self, age_days: np.ndarray | float, maturity_days: float) -> np.ndarray:
        age = np.asarray(age_days, dtype=float)
        if self.delay_days.size == 0:
            return np.where(age >= maturity_days, 1.0, 0.0)
        ordered = np.sort(self.delay_days)
        return np.searchsorted(ordered, age, side="right") / ordered.size

    def age_for(self, completeness: float, maturity_days: float) -> float:
        """The youngest age whose expected completeness reaches ``completeness``."""
        if self.delay_days.size == 0:
            return maturity_days
        age = float(np.quantile(np.sort(self.delay_days), min(completeness, 1.0), method="higher"))
        return min(age, maturity_days)


def chargeback_delays(
    transactions: pd.DataFrame,
    labels: pd.DataFrame,
    clock: pd.Timestamp,
    horizon_days: float,
) -> LabelDelays:
    """Delays of the chargebacks of history transactions old enough to have all of theirs.

    ``transactions``: txn_id, event_timestamp (no outcome columns needed, none read);
    ``labels``: txn_id, chargeback_timestamp, as of ``clock``. Only transactions older than the
    horizon count (a younger one's slow chargebacks have not arrived: including it would make
    delays look short). The horizon shrinks to half the history when the history is short.
    """
    past = transactions.loc[transactions["event_timestamp"] <= clock]
    if past.empty:
        return LabelDelays(np.array([]), float(horizon_days))
    history_days = (clock - past["event_timestamp"].min()) / pd.Timedelta(days=1)
    horizon = float(min(horizon_days, history_days / 2.0))
    cohort = past.loc[past["event_timestamp"] <= clock - pd.Timedelta(days=horizon)]
    joined = cohort.merge(labels, on="txn_id", how="inner")
    delay = (joined["chargeback_timestamp"] - joined["event_timestamp"]) / pd.Timedelta(days=1)
    delay = delay.to_numpy(dtype=float)
    return LabelDelays(delay[delay <= horizon], horizon, len(cohort))


def scored_frame(records: Iterable[PredictionRecord]) -> pd.DataFrame:
    """One row per logged decision: what was scored, how, and its slice columns."""
    rows = []
    for r in records:
        features = r.features or {}
        rows.append(
            {
                "transaction_id": None if r.transaction_id is None else str(r.transaction_id),
                "event_ts": r.event_ts,
                "score": r.score,
                "threshold": r.threshold,
                "amount": r.amount,
                "model_version": str(r.model_version),
                "fallback": r.fallback,
                "merchant_category": features.get("merchant_category"),
                "home_region": features.get("home_region"),
                "account_age_days": (r.model_inputs or {}).get("account_age_days"),
            }
        )
    columns = [
        "transaction_id",
        "event_ts",
        "score",
        "threshold",
        "amount",
        "model_version",
        "fallback",
        "merchant_category",
        "home_region",
        "account_age_days",
    ]
    return pd.DataFrame.from_records(rows, columns=columns)


def _txn_ids(values: pd.Series) -> pd.Series:
    """Transaction ids as integers; anything that is not one (a test's "it-…") becomes NA."""
    return pd.to_numeric(values, errors="coerce").astype("Int64")


@dataclass
class AgeBucket:
    """The scored transactions of one label-age range, judged or not."""

    bucket: str
    min_days: float
    max_days: float | None
    n: int
    positives: int  # chargebacks arrived so far
    expected_completeness: float | None
    judged: int  # records of this bucket inside the judged part
    metrics: dict[str, float | None] = field(default_factory=dict)


@dataclass
class VersionPerformance:
    """The judged part scored by one model version, at that version's threshold, by slice."""

    version: str
    threshold: float
    n: int
    positives: int
    slices: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)


@dataclass
class PerformanceResult:
    status: Status
    reason: str
    clock: str
    n_records: int  # scored transactions in the window (deduplicated, synthetic left out)
    n_duplicates: int = 0  # repeated transaction ids (the first decision is kept)
    n_fallback: int = 0
    n_unlabelable: int = 0  # transaction id is not a known transaction: no label can exist
    unlabelable_examples: list[str] = field(default_factory=list)
    n_labelable: int = 0
    n_matured: int = 0  # older than label_maturity_days: label final
    matured_share: float = 0.0  # of the labelable ones
    positives_so_far: int = 0  # chargebacks arrived for the labelable ones
    window_completeness: float | None = None  # expected label completeness of the window
    n_judged: int = 0
    judged_positives: int = 0
    judged_completeness: float | None = None
    min_judged_age_days: float | None = None
    label_maturity_days: float = 0.0
    min_completeness: float = 0.0
    min_positives: int = 0
    completeness_by_age: dict[str, float] = field(default_factory=dict)
    delay_horizon_days: float | None = None
    delay_chargebacks: int = 0  # chargebacks the completeness curve is estimated from
    metrics: dict[str, float | None] = field(default_factory=dict)  # judged part, labels so far
    adjusted: dict[str, float | None] = field(default_factory=dict)  # ÷ expected completeness
    baseline: dict[str, float | None] = field(default_factory=dict)  # champion's test metrics
    drops: dict[str, float | None] = field(default_factory=dict)  # baseline − live
    label_age: list[AgeBucket] = field(default_factory=list)
    versions: list[VersionPerformance] = field(default_factory=list)
    checks: dict[str, str] = field(default_factory=dict)  # verdict per judged metric
    model_version: str | None = None
    run_dir: str | None = None
    seconds: float | None = None
    workspace_run: str | None = None
    workspace_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _json_ready(asdict(self))


def _json_ready(value: Any) -> Any:
    """NaN and infinity as null (JSON has neither), numpy scalars unwrapped, recursively."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _age_buckets(maturity_days: float) -> list[tuple[str, float, float]]:
    edges = sorted({*AGE_EDGES_DAYS, float(maturity_days)} - {math.inf})
    buckets = []
    for low, high in zip(edges, [*edges[1:], math.inf], strict=True):
        if math.isinf(high):
            label = f"≥{low:g}d (matured)" if low >= maturity_days else f"≥{low:g}d"
        else:
            label = f"{low:g}-{high:g}d"
        buckets.append((label, low, high))
    return buckets


def _metrics(part: pd.DataFrame, false_decline_cost: float) -> dict[str, float]:
    """model.evaluation's metrics, each decision at the threshold it was actually made with.

    ``classification_metrics`` compares ``score >= threshold`` elementwise, so a per-record
    threshold array judges a window that spans a model change by each record's own threshold.
    """
    return classification_metrics(
        part["y"].to_numpy(),
        part["score"].to_numpy(),
        part["amount"].to_numpy(),
        part["threshold"].to_numpy(),  # type: ignore[arg-type]  # elementwise, see above
        false_decline_cost,
    )


def _verdict(
    live: float | None, baseline: float | None, warn_drop: float, alert_drop: float
) -> tuple[Status, float | None]:
    if live is None or baseline is None:
        return "ok", None
    drop = baseline - live
    if drop > alert_drop:
        return "alert", drop
    return ("warn" if drop > warn_drop else "ok"), drop


def compute_performance(
    scored: pd.DataFrame,
    labels: pd.DataFrame,
    known_txn_ids: np.ndarray | pd.Series,
    delays: LabelDelays,
    *,
    clock: pd.Timestamp,
    baseline: dict[str, float] | None,
    policy: PerformancePolicy,
) -> PerformanceResult:
    """Join, weigh label completeness, measure and judge; no I/O.

    ``scored``: ``scored_frame`` rows (the window); ``labels``: txn_id, chargeback_timestamp as
    of ``clock``; ``known_txn_ids``: every transaction id the warehouse knows; ``baseline``: the
    champion's test metrics (None: nothing to judge against).
    """
    clock = pd.Timestamp(clock)
    result = PerformanceResult(
        status="insufficient_data",
        reason="",
        clock=clock.isoformat(),
        n_records=0,
        label_maturity_days=policy.label_maturity_days,
        min_completeness=policy.min_completeness,
        min_positives=policy.min_positives,
        delay_horizon_days=delays.horizon_days,
        delay_chargebacks=int(delays.delay_days.size),
        completeness_by_age={
            f"{a}d": float(delays.completeness(a, policy.label_maturity_days))
            for a in COMPLETENESS_AGES_DAYS
        },
        min_judged_age_days=delays.age_for(policy.min_completeness, policy.label_maturity_days),
        baseline={k: _finite((baseline or {}).get(k)) for k in ("recall", "pr_auc", "precision")},
    )
    frame = scored.drop_duplicates("transaction_id", keep="first")
    result.n_duplicates = int(
        scored["transaction_id"].notna().sum() - frame["transaction_id"].notna().sum()
    )
    result.n_records = len(frame)
    result.n_fallback = int(frame["fallback"].sum())
    ids = _txn_ids(frame["transaction_id"])
    known = ids.isin(pd.Series(np.asarray(known_txn_ids)).astype("Int64")).fillna(False)
    unknown = frame.loc[~known.to_numpy(), "transaction_id"]
    result.n_unlabelable = len(unknown)
    result.unlabelable_examples = [str(t) for t in unknown.head(N_EXAMPLES)]
    frame = frame.loc[known.to_numpy()].copy()
    frame["txn_id"] = ids[known].astype("int64").to_numpy()
    result.n_labelable = len(frame)
    if frame.empty:
        result.reason = (
            "no scored transaction with a known transaction id in the window: nothing to label"
        )
        return result

    charged_back = set(labels["txn_id"].astype("int64").tolist())
    frame["y"] = frame["txn_id"].isin(charged_back).astype(int)
    age = np.maximum((clock.timestamp() - frame["event_ts"].to_numpy()) / DAY_S, 0.0)
    frame["age_days"] = age
    frame["completeness"] = delays.completeness(age, policy.label_maturity_days)
    matured = age >= policy.label_maturity_days
    judged_mask = matured | (frame["completeness"].to_numpy() >= policy.min_completeness)
    result.n_matured = int(matured.sum())
    result.matured_share = float(matured.mean())
    result.positives_so_far = int(frame["y"].sum())
    result.window_completeness = float(frame["completeness"].mean())

    for label, low, high in _age_buckets(policy.label_maturity_days):
        in_bucket = (age >= low) & (age < high)
        part = frame.loc[in_bucket]
        bucket = AgeBucket(
            bucket=label,
            min_days=low,
            max_days=None if math.isinf(high) else high,
            n=len(part),
            positives=int(part["y"].sum()),
            expected_completeness=_finite(part["completeness"].mean()) if len(part) else None,
            judged=int((in_bucket & judged_mask).sum()),
        )
        if len(part):
            values = _metrics(part, policy.false_decline_cost)
            bucket.metrics = {k: _finite(values[k]) for k in BUCKET_METRICS}
        result.label_age.append(bucket)

    judged = frame.loc[judged_mask]
    result.n_judged = len(judged)
    result.judged_positives = int(judged["y"].sum())
    if len(judged):
        result.judged_completeness = float(judged["completeness"].mean())
        values = _metrics(judged, policy.false_decline_cost)
        result.metrics = {k: _finite(v) for k, v in values.items()}
        c = result.judged_completeness or 0.0
        result.adjusted = {
            name: (
                None
                if result.metrics.get(name) is None or c <= 0
                else min(1.0, result.metrics[name] / c)
            )
            for name in ("pr_auc", "precision")
        }
        for version, part in judged.groupby("model_version", sort=True):
            threshold = float(part["threshold"].iloc[0])
            # training's slice columns, built by training's own function from the served values
            slices = slice_frame(
                part.rename(columns={"y": "label"}),
                part[["account_age_days"]].to_numpy(dtype=float),
                ["account_age_days"],
                part["score"].to_numpy(),
            )
            result.versions.append(
                VersionPerformance(
                    version=str(version),
                    threshold=threshold,
                    n=len(part),
                    positives=int(part["y"].sum()),
                    slices=slice_metrics(slices, SLICES, threshold, policy.false_decline_cost),
                )
            )

    window = (
        f"{result.judged_positives} chargebacks among {result.n_judged} transactions old enough"
        f" for ≥{policy.min_completeness:.0%} of their labels (≥{result.min_judged_age_days:.1f}"
        f" days; {result.n_matured} matured at {policy.label_maturity_days:g} days)"
    )
    if baseline is None:
        result.reason = f"{window}; the champion has no test metrics to compare with"
        return result
    if result.judged_positives < policy.min_positives:
        result.reason = f"{window}: fewer than {policy.min_positives}, no verdict yet"
        return result

    recall_status, recall_drop = _verdict(
        result.metrics.get("recall"),
        result.baseline.get("recall"),
        policy.recall_warn_drop,
        policy.recall_alert_drop,
    )
    pr_status, pr_drop = _verdict(
        result.adjusted.get("pr_auc"),
        result.baseline.get("pr_auc"),
        policy.pr_auc_warn_drop,
        policy.pr_auc_alert_drop,
    )
    result.drops = {"recall": recall_drop, "pr_auc": pr_drop}
    result.checks = {"recall": recall_status, "pr_auc": pr_status}
    result.status = max((recall_status, pr_status), key=lambda s: _RANK[s])
    parts = []
    for name, live, status in (
        ("recall", result.metrics.get("recall"), recall_status),
        ("PR-AUC (completeness-adjusted)", result.adjusted.get("pr_auc"), pr_status),
    ):
        key = "recall" if name == "recall" else "pr_auc"
        base = result.baseline.get(key)
        if live is not None and base is not None:
            parts.append(f"{name} {live:.3f} vs champion test {base:.3f} ({status})")
    result.reason = f"{window}; " + "; ".join(parts)
    return result


def champion_test_metrics(directory: Path) -> dict[str, float] | None:
    """The champion's own test-split metrics from its bundle (None when it has none)."""
    path = directory / EVALUATION_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text()).get("metrics", {}).get("test")


def _fmt(value: float | None, pattern: str = "{:.3f}") -> str:
    return "–" if value is None else pattern.format(value)


def render_html(result: PerformanceResult) -> str:
    """A small self-contained page: the verdict, label completeness by age, slices."""
    esc = html.escape
    rows = []
    for b in result.label_age:
        m = b.metrics
        rows.append(
            f"<tr><td>{esc(b.bucket)}</td><td>{b.n}</td><td>{b.positives}</td>"
            f"<td>{_fmt(b.expected_completeness, '{:.0%}')}</td><td>{b.judged}</td>"
            f"<td>{_fmt(m.get('recall'))}</td><td>{_fmt(m.get('precision'))}</td>"
            f"<td>{_fmt(m.get('pr_auc'))}</td>"
            f"<td>{_fmt(m.get('expected_cost'), '{:,.0f}')}</td></tr>"
        )
    headline = []
    for key, label in (
        ("recall", "recall"),
        ("precision", "precision"),
        ("pr_auc", "PR-AUC"),
        ("expected_cost", "expected cost"),
        ("expected_cost_per_1k", "expected cost per 1k"),
    ):
        adjusted = result.adjusted.get(key)
        base = result.baseline.get(key)
        headline.append(
            f"<tr><td>{label}</td><td>{_fmt(result.metrics.get(key))}</td>"
            f"<td>{_fmt(adjusted)}</td><td>{_fmt(base)}</td></tr>"
        )
    slices = []
    for v in result.versions:
        for name, groups in v.slices.items():
            for value, m in groups.items():
                slices.append(
                    f"<tr><td>v{esc(v.version)}</td><td>{esc(name)}</td><td>{esc(value)}</td>"
                    f"<td>{int(m.get('n', 0))}</td><td>{int(m.get('positives', 0))}</td>"
                    f"<td>{_fmt(_finite(m.get('recall')))}</td>"
                    f"<td>{_fmt(_finite(m.get('pr_auc')))}</td></tr>"
                )
    completeness = ", ".join(f"{k}: {v:.0%}" for k, v in result.completeness_by_age.items())
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>fraudlab performance</title>"
        "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:4px}"
        "table{border-collapse:collapse;margin-bottom:1em}</style></head><body>"
        f"<h1>Live performance: {esc(result.status)}</h1><p>{esc(result.reason)}</p>"
        f"<p>Clock {esc(result.clock)}. {result.n_records} scored transactions in the window"
        f" ({result.n_fallback} fallback, {result.n_duplicates} repeats left out);"
        f" {result.n_unlabelable} with an unknown transaction id cannot be labelled;"
        f" {result.n_matured} of {result.n_labelable} matured"
        f" ({result.matured_share:.0%}); expected label completeness of the window"
        f" {_fmt(result.window_completeness, '{:.0%}')}.</p>"
        f"<p>Expected completeness by age (from {result.delay_chargebacks} historical"
        f" chargebacks, horizon {_fmt(result.delay_horizon_days, '{:.0f}')} days):"
        f" {esc(completeness)}.</p>"
        "<h2>Judged part</h2><table><tr><th>metric</th><th>labels so far</th>"
        "<th>÷ completeness</th><th>champion test</th></tr>" + "".join(headline) + "</table>"
        "<h2>By label age</h2><table><tr><th>age</th><th>n</th><th>chargebacks so far</th>"
        "<th>expected completeness</th><th>judged</th><th>recall</th><th>precision</th>"
        "<th>PR-AUC</th><th>expected cost</th></tr>" + "".join(rows) + "</table>"
        "<h2>Slices (judged part)</h2><table><tr><th>model</th><th>slice</th><th>value</th>"
        "<th>n</th><th>chargebacks</th><th>recall</th><th>PR-AUC</th></tr>"
        + "".join(slices)
        + "</table></body></html>"
    )


def workspace_values(result: PerformanceResult) -> dict[str, float | None]:
    """The numbers charted over runs in the workspace's "performance" tab."""
    return {
        "recall": result.metrics.get("recall"),
        "recall_champion_test": result.baseline.get("recall"),
        "pr_auc_adjusted": result.adjusted.get("pr_auc"),
        "pr_auc_labels_so_far": result.metrics.get("pr_auc"),
        "pr_auc_champion_test": result.baseline.get("pr_auc"),
        "precision_adjusted": result.adjusted.get("precision"),
        "expected_cost_per_1k": result.metrics.get("expected_cost_per_1k"),
        "matured_share": result.matured_share if result.n_labelable else None,
        "window_completeness": result.window_completeness,
        "judged_completeness": result.judged_completeness,
        "judged_chargebacks": result.judged_positives,
        "scored_transactions": result.n_records,
        "unlabelable_transactions": result.n_unlabelable,
    }


def workspace_panels() -> list:
    from monitoring import workspace
    from monitoring.gauges import series

    return [
        workspace.line_panel(
            "Live recall vs champion test",
            [series("recall", "live recall (judged part)"), series("recall_champion_test")],
            description="recall among chargebacks arrived, on transactions old enough to judge",
        ),
        workspace.line_panel(
            "Live PR-AUC vs champion test",
            [
                series("pr_auc_adjusted", "live PR-AUC ÷ label completeness"),
                series("pr_auc_labels_so_far", "live PR-AUC, labels so far"),
                series("pr_auc_champion_test"),
            ],
        ),
        workspace.line_panel(
            "Label maturity of the window",
            [
                series("matured_share", "matured share"),
                series("window_completeness", "expected completeness (window)"),
                series("judged_completeness", "expected completeness (judged part)"),
            ],
        ),
        workspace.line_panel(
            "Chargebacks in the judged part", [series("judged_chargebacks", "chargebacks")]
        ),
    ]


def run_performance(settings: Settings, run_dir: Path | None = None) -> PerformanceResult:
    """Judge the logged decisions of the last ``perf_window_days`` against arrived labels."""
    from pipelines.data import read_clock, read_labels, read_raw

    started = time.perf_counter()
    run_dir = run_dir or sources.new_run_dir(settings)
    bundle = sources.load_champion(settings)
    clock = read_clock(settings)
    since = clock.timestamp() - settings.perf_window_days * DAY_S
    # streamed newest first into a few fields each (the whole log would not fit as dicts),
    # then put back in logged order: a repeated transaction keeps its first decision
    scored = scored_frame(
        r
        for r in sources.iter_log(settings.prediction_log_dir, include_fallback=True)
        if r.event_ts >= since
    )
    scored = scored.iloc[::-1].reset_index(drop=True)
    # ids and event times only: the table's outcome columns are the future's answers
    transactions = read_raw(settings, "transactions")[["txn_id", "event_timestamp"]]
    labels = read_labels(settings, as_of=clock)
    delays = chargeback_delays(transactions, labels, clock, settings.perf_label_horizon_days)
    result = compute_performance(
        scored,
        labels,
        transactions["txn_id"].to_numpy(),
        delays,
        clock=clock,
        baseline=champion_test_metrics(bundle.directory),
        policy=PerformancePolicy.from_settings(settings),
    )
    result.model_version = bundle.version
    result.run_dir = str(run_dir)
    result.workspace_run, result.workspace_error = gauges.record(
        settings,
        monitor="performance",
        name=f"performance {run_dir.name}",
        values=workspace_values(result),
        checks=result.checks,
        check_noun="metrics",
        panels=workspace_panels(),
        metadata={"model_version": str(bundle.version), "status": result.status},
    )
    result.seconds = round(time.perf_counter() - started, 2)
    (run_dir / "performance.html").write_text(render_html(result))
    (run_dir / "performance.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return result
