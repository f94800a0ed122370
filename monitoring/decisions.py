"""Decisions: what the champion declines, how often it falls back, and what its threshold costs.

Owns: judging the decisions customers got against the champion's own holdout figures (the
``baseline`` its training wrote into ``evaluation.json``), and its outputs: ``decisions.json``
and ``decisions.html`` in the run folder, the numbers in the Evidently workspace's "decisions"
tab (``monitoring.gauges``).
Must not: read the log other than through ``monitoring.sources``, count a decline any other way
than the decision logged, or compute a cost or an optimal threshold itself (``model.decision``).

A model can score every input as it did in training and still decide badly: a threshold
mis-set, a calibration shifted (scores up, same ranking: PSI on the score may stay quiet for
days), a champion that declines twelve times what its predecessor did. Four checks, each
``ok`` / ``warn`` / ``alert`` or not judged:

- **decline rate** of the champion's own decisions in the window (the drift monitor's window:
  ``Settings.monitor_window_hours`` of event time up to the newest record, whole days because
  declines follow the daily cycle; since the current serving release when
  ``monitor_current_release_only``) against the decline rate at its threshold on its test
  split. Judged on the ratio either way (a collapse in declines lets fraud through):
  ``decisions_decline_warn_ratio`` / ``decisions_decline_alert_ratio``. Needs
  ``monitor_min_records`` of the champion's decisions spanning the window.
- **fallback rate** of every decision in the window (fallback decisions were made without the
  stored features): ``fallback_rate_warn`` / ``fallback_rate_alert``.
- **fraud rate**, once labels matured (transactions older than ``label_maturity_days`` within
  ``perf_window_days`` of the clock, labelled by the chargebacks arrived), against the fraud
  rate of the champion's training window: ``decisions_fraud_rate_warn_ratio`` /
  ``..._alert_ratio`` either way (a prior shift moves the cost-optimal threshold).
- **threshold cost** on the champion's matured decisions: the expected cost at the thresholds
  they were made with against the cost at the threshold that would have been optimal on them
  (``model.decision.choose_threshold``, in hindsight). Judged on the share of the optimum's
  savings over declining nothing that the live threshold kept (``decisions_savings_warn`` /
  ``_alert``): the in-hindsight optimum fits a few dozen frauds exactly, so its cost is always
  lower; a healthy threshold keeps most of its savings, a mis-set one loses most of them.

The matured checks need ``decisions_min_frauds`` chargebacks. Overall status: the worst judged
check; ``insufficient_data`` when none could be judged. The judgement is pure
(``compute_decisions``: frames in, result out); ``run_decisions`` does the I/O.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from foundation.settings import Settings
from model import decision
from monitoring import gauges, sources

if TYPE_CHECKING:
    from model.record import PredictionRecord

Status = Literal["ok", "warn", "alert", "insufficient_data"]
_RANK: dict[str, int] = {"ok": 0, "warn": 1, "alert": 2}
DAY_S = 86_400.0
EVALUATION_FILE = "evaluation.json"
# A window must cover this share of monitor_window_hours (as the drift monitor's).
MIN_SPAN_SHARE = 0.95
COLUMNS = (
    "event_ts",
    "transaction_id",
    "amount",
    "score",
    "declined",
    "threshold",
    "model_version",
    "fallback",
    "release",
)


def decision_row(record: PredictionRecord) -> tuple:
    """The few fields of a prediction record this monitor reads, in ``COLUMNS`` order."""
    return (
        float(record.event_ts),
        None if record.transaction_id is None else str(record.transaction_id),
        float(record.amount),
        float(record.score),
        record.decision == "decline",
        float(record.threshold),
        str(record.model_version),
        bool(record.fallback),
        record.release,
    )


def decisions_frame(records: Iterable[PredictionRecord]) -> pd.DataFrame:
    """One row per logged decision, oldest first as given."""
    return pd.DataFrame.from_records(
        [decision_row(r) for r in records], columns=list(COLUMNS)
    ).astype({"declined": bool, "fallback": bool})


@dataclass(frozen=True)
class DecisionBaseline:
    """The champion's own figures: its test split's decline rate at its threshold and the
    fraud rate of its training window (``evaluation.json``, written by training)."""

    decline_rate: float | None
    fraud_rate: float | None


def champion_baseline(directory: Path) -> DecisionBaseline | None:
    """The baseline in a bundle's ``evaluation.json`` (None without one).

    Bundles trained before the ``baseline`` block existed still have per-split metrics: the
    test decline rate, and the fraud rate from the splits' counts.
    """
    path = directory / EVALUATION_FILE
    if not path.exists():
        return None
    report = json.loads(path.read_text())
    stored = report.get("baseline")
    if stored:
        return DecisionBaseline(stored.get("decline_rate"), stored.get("fraud_rate"))
    metrics = report.get("metrics", {})
    n = sum(m.get("n", 0.0) for m in metrics.values())
    frauds = sum(m.get("positives", 0.0) for m in metrics.values())
    return DecisionBaseline(metrics.get("test", {}).get("decline_rate"), frauds / n if n else None)


@dataclass(frozen=True)
class DecisionsPolicy:
    """The judgement's knobs; their defaults live in the settings only (``from_settings``)."""

    window_hours: float
    min_records: int
    decline_warn_ratio: float
    decline_alert_ratio: float
    fallback_warn: float
    fallback_alert: float
    label_maturity_days: float
    min_frauds: int
    fraud_rate_warn_ratio: float
    fraud_rate_alert_ratio: float
    savings_warn: float
    savings_alert: float
    false_decline_cost: float
    current_release_only: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> DecisionsPolicy:
        return cls(
            window_hours=settings.monitor_window_hours,
            min_records=settings.monitor_min_records,
            decline_warn_ratio=settings.decisions_decline_warn_ratio,
            decline_alert_ratio=settings.decisions_decline_alert_ratio,
            fallback_warn=settings.fallback_rate_warn,
            fallback_alert=settings.fallback_rate_alert,
            label_maturity_days=float(settings.label_maturity_days),
            min_frauds=settings.decisions_min_frauds,
            fraud_rate_warn_ratio=settings.decisions_fraud_rate_warn_ratio,
            fraud_rate_alert_ratio=settings.decisions_fraud_rate_alert_ratio,
            savings_warn=settings.decisions_savings_warn,
            savings_alert=settings.decisions_savings_alert,
            false_decline_cost=settings.false_decline_cost,
            current_release_only=settings.monitor_current_release_only,
        )


@dataclass
class Check:
    """One judged number: the live value, what it is compared with, and the verdict."""

    name: str
    status: Status
    live: float | None = None
    baseline: float | None = None
    ratio: float | None = None  # live / baseline (or the savings share for threshold_cost)
    detail: str = ""


@dataclass
class DecisionsResult:
    status: Status
    reason: str
    clock: str
    model_version: str | None = None
    n_window: int = 0  # decisions in the window (every version, fallback included)
    n_champion: int = 0  # of them, the champion's
    span_hours: float = 0.0  # event time the champion's decisions cover
    min_span_hours: float = 0.0
    releases_left_out: int = 0  # decisions of earlier serving releases (current_release_only)
    decline_rate: float | None = None
    baseline_decline_rate: float | None = None
    fallback_rate: float | None = None
    n_fallback: int = 0
    decline_rate_by_version: dict[str, float] = field(default_factory=dict)
    n_matured: int = 0  # labelable decisions old enough for their labels to be final
    matured_frauds: int = 0
    fraud_rate: float | None = None
    training_fraud_rate: float | None = None
    n_matured_champion: int = 0
    matured_champion_frauds: int = 0
    live_threshold: float | None = None
    cost_live: float | None = None  # expected cost of the champion's matured decisions
    optimal_threshold: float | None = None  # choose_threshold on the same decisions
    cost_optimal: float | None = None
    cost_decline_nothing: float | None = None
    savings_share: float | None = None
    checks: dict[str, Check] = field(default_factory=dict)
    run_dir: str | None = None
    seconds: float | None = None
    workspace_run: str | None = None
    workspace_error: str | None = None

    @property
    def verdicts(self) -> dict[str, str]:
        return {name: c.status for name, c in self.checks.items()}

    def to_dict(self) -> dict[str, Any]:
        return _json_ready({**asdict(self), "verdicts": self.verdicts})


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _ratio_verdict(ratio: float, warn: float, alert: float) -> Status:
    """ok / warn / alert for a ratio that is wrong either way (0.25 is as far off as 4)."""
    off = max(ratio, 1.0 / ratio) if ratio > 0 else math.inf
    if off >= alert:
        return "alert"
    return "warn" if off >= warn else "ok"


def _rate_ratio(live: float, baseline: float | None) -> float | None:
    if baseline is None or not math.isfinite(baseline) or baseline <= 0:
        return None
    return live / baseline


def _window(frame: pd.DataFrame, policy: DecisionsPolicy) -> tuple[pd.DataFrame, int]:
    """The window's decisions: ``window_hours`` up to the newest, of the newest record's
    serving release when ``current_release_only``; also how many earlier releases left."""
    if frame.empty:
        return frame, 0
    newest = frame["event_ts"].max()
    window = frame.loc[frame["event_ts"] >= newest - policy.window_hours * 3600.0]
    left_out = 0
    if policy.current_release_only:
        current = frame.loc[frame["event_ts"].idxmax(), "release"]
        same = window["release"].isna() if current is None else window["release"] == current
        left_out = int((~same).sum())
        window = window.loc[same]
    return window, left_out


def _judge_window(
    result: DecisionsResult,
    window: pd.DataFrame,
    champion: str,
    base: DecisionBaseline | None,
    policy: DecisionsPolicy,
) -> None:
    result.n_window = len(window)
    if window.empty:
        return
    result.n_fallback = int(window["fallback"].sum())
    result.fallback_rate = float(window["fallback"].mean())
    result.decline_rate_by_version = {
        str(v): float(part["declined"].mean()) for v, part in window.groupby("model_version")
    }
    fallback = result.fallback_rate
    status: Status = (
        "alert"
        if fallback >= policy.fallback_alert
        else "warn"
        if fallback >= policy.fallback_warn
        else "ok"
    )
    result.checks["fallback_rate"] = Check(
        "fallback_rate",
        status,
        live=fallback,
        baseline=0.0,
        detail=f"{result.n_fallback} of {len(window)} decisions made without stored features"
        f" (warn ≥ {policy.fallback_warn:.1%}, alert ≥ {policy.fallback_alert:.1%})",
    )

    own = window.loc[window["model_version"] == champion]
    result.n_champion = len(own)
    result.span_hours = (
        float(own["event_ts"].max() - own["event_ts"].min()) / 3600.0 if len(own) > 1 else 0.0
    )
    baseline = None if base is None else base.decline_rate
    result.baseline_decline_rate = baseline
    if len(own):
        result.decline_rate = float(own["declined"].mean())
    check = Check("decline_rate", "insufficient_data", result.decline_rate, baseline)
    if baseline is None:
        check.detail = "the champion's bundle has no test decline rate to compare with"
    elif len(own) < policy.min_records:
        check.detail = (
            f"{len(own)} of the champion's decisions in the window; a verdict needs"
            f" {policy.min_records}"
        )
    elif result.span_hours < result.min_span_hours:
        check.detail = (
            f"the champion's decisions cover {result.span_hours:.1f} h of event time; a verdict"
            f" needs {result.min_span_hours:.1f} h (declines follow the daily cycle)"
        )
    else:
        assert result.decline_rate is not None
        check.ratio = _rate_ratio(result.decline_rate, baseline)
        if check.ratio is None:  # a champion that declined nothing in its test split
            check.status = "alert" if result.decline_rate > 0 else "ok"
        else:
            check.status = _ratio_verdict(
                check.ratio, policy.decline_warn_ratio, policy.decline_alert_ratio
            )
        check.detail = (
            f"{int(own['declined'].sum())} declines in {len(own)} decisions:"
            f" {result.decline_rate:.2%} vs {baseline:.2%} on the champion's test split"
            + ("" if check.ratio is None else f" (×{check.ratio:.2f})")
            + f"; warn beyond ×{policy.decline_warn_ratio:g}, alert beyond"
            f" ×{policy.decline_alert_ratio:g} either way"
        )
    result.checks["decline_rate"] = check


def _judge_matured(
    result: DecisionsResult,
    matured: pd.DataFrame,
    fraud_ids: set[int],
    champion: str,
    base: DecisionBaseline | None,
    policy: DecisionsPolicy,
) -> None:
    frame = matured.copy()
    frame["y"] = frame["txn_id"].isin(fraud_ids)
    result.n_matured = len(frame)
    result.matured_frauds = int(frame["y"].sum())
    result.training_fraud_rate = None if base is None else base.fraud_rate
    fraud = Check("fraud_rate", "insufficient_data", baseline=result.training_fraud_rate)
    if len(frame):
        result.fraud_rate = fraud.live = float(frame["y"].mean())
    if result.matured_frauds < policy.min_frauds:
        fraud.detail = (
            f"{result.matured_frauds} chargebacks among {len(frame)} matured decisions; a"
            f" verdict needs {policy.min_frauds}"
        )
    elif result.training_fraud_rate is None:
        fraud.detail = "the champion's bundle has no training fraud rate to compare with"
    else:
        assert result.fraud_rate is not None
        fraud.ratio = _rate_ratio(result.fraud_rate, result.training_fraud_rate)
        fraud.status = (
            "ok"
            if fraud.ratio is None
            else _ratio_verdict(
                fraud.ratio, policy.fraud_rate_warn_ratio, policy.fraud_rate_alert_ratio
            )
        )
        fraud.detail = (
            f"{result.matured_frauds} chargebacks in {len(frame)} matured transactions:"
            f" {result.fraud_rate:.3%} vs {result.training_fraud_rate:.3%} in training"
            f"; warn beyond ×{policy.fraud_rate_warn_ratio:g}, alert beyond"
            f" ×{policy.fraud_rate_alert_ratio:g} either way"
        )
    result.checks["fraud_rate"] = fraud

    own = frame.loc[frame["model_version"] == champion]
    result.n_matured_champion = len(own)
    result.matured_champion_frauds = int(own["y"].sum())
    cost = Check("threshold_cost", "insufficient_data")
    if result.matured_champion_frauds < policy.min_frauds:
        cost.detail = (
            f"{result.matured_champion_frauds} chargebacks among the champion's"
            f" {len(own)} matured decisions; a verdict needs {policy.min_frauds}"
        )
        result.checks["threshold_cost"] = cost
        return
    y = own["y"].to_numpy()
    score = own["score"].to_numpy()
    amount = own["amount"].to_numpy()
    friction = policy.false_decline_cost
    result.live_threshold = float(own["threshold"].median())
    result.cost_live = decision.expected_cost(y, own["declined"].to_numpy(), amount, friction)
    best = decision.choose_threshold(y, score, amount, friction)
    result.optimal_threshold = best
    result.cost_optimal = decision.expected_cost(
        y, decision.decline(score, best), amount, friction
    )
    result.cost_decline_nothing = decision.expected_cost(
        y, np.zeros(len(y), dtype=bool), amount, friction
    )
    saved_best = result.cost_decline_nothing - result.cost_optimal
    share = (
        1.0 if saved_best <= 0 else (result.cost_decline_nothing - result.cost_live) / saved_best
    )
    result.savings_share = float(share)
    cost.live, cost.baseline, cost.ratio = result.cost_live, result.cost_optimal, share
    cost.status = (
        "alert"
        if share < policy.savings_alert
        else "warn"
        if share < policy.savings_warn
        else "ok"
    )
    cost.detail = (
        f"expected cost {result.cost_live:,.0f} at threshold {result.live_threshold:.4f} vs"
        f" {result.cost_optimal:,.0f} at {best:.4f}, optimal in hindsight on the same"
        f" {len(own)} decisions ({result.matured_champion_frauds} chargebacks); declining"
        f" nothing costs {result.cost_decline_nothing:,.0f}: {share:.0%} of the optimum's"
        f" savings kept (warn below {policy.savings_warn:.0%}, alert below"
        f" {policy.savings_alert:.0%})"
    )
    result.checks["threshold_cost"] = cost


def compute_decisions(
    frame: pd.DataFrame,
    fraud_ids: Iterable[int],
    known_txn_ids: Iterable[int] | None,
    *,
    champion: str,
    baseline: DecisionBaseline | None,
    clock: pd.Timestamp,
    since: float,
    policy: DecisionsPolicy,
) -> DecisionsResult:
    """Judge logged decisions (``decisions_frame`` rows, production only); no I/O.

    ``fraud_ids``: transactions whose chargeback had arrived by ``clock``; ``known_txn_ids``:
    the transactions the warehouse knows (None: any numeric id is labelable); ``since``: the
    oldest event time (epoch s) the matured checks look at.
    """
    clock = pd.Timestamp(clock)
    result = DecisionsResult(
        status="insufficient_data",
        reason="",
        clock=clock.isoformat(),
        model_version=champion,
        min_span_hours=policy.window_hours * MIN_SPAN_SHARE,
    )
    window, result.releases_left_out = _window(frame, policy)
    _judge_window(result, window, champion, baseline, policy)

    matured = frame.loc[
        (frame["event_ts"] >= since)
        & (frame["event_ts"] <= clock.timestamp() - policy.label_maturity_days * DAY_S)
    ]
    # a repeated transaction keeps its first decision: that is what the customer got
    matured = matured.drop_duplicates("transaction_id", keep="first")
    ids = pd.to_numeric(matured["transaction_id"], errors="coerce")
    labelable = ids.notna()
    if known_txn_ids is not None:
        labelable &= ids.isin(pd.Series(list(known_txn_ids), dtype="float64"))
    matured = matured.loc[labelable].assign(txn_id=ids[labelable].astype("int64"))
    _judge_matured(result, matured, set(map(int, fraud_ids)), champion, baseline, policy)

    judged = [c.status for c in result.checks.values() if c.status in _RANK]
    if judged:
        result.status = max(judged, key=lambda s: _RANK[s])
    result.reason = "; ".join(f"{c.name} {c.status}: {c.detail}" for c in result.checks.values())
    return result


def read_decisions(settings: Settings, since: float) -> pd.DataFrame:
    """Production decisions (fallback included) of the drift window and back to ``since``,
    oldest first, reduced to ``COLUMNS`` as the log streams by (newest first)."""
    rows = []
    newest = -math.inf
    for record in sources.iter_log(settings.prediction_log_dir, include_fallback=True):
        row = decision_row(record)
        newest = max(newest, row[0])
        oldest_needed = min(since, newest - settings.monitor_window_hours * 3600.0)
        if row[0] < oldest_needed - sources.OUT_OF_ORDER_S:
            break
        rows.append(row)
    frame = pd.DataFrame.from_records(rows[::-1], columns=list(COLUMNS))
    return frame.astype({"declined": bool, "fallback": bool})


def _num(value: float | None, pattern: str) -> str:
    return "–" if value is None else pattern.format(value)


def render_html(result: DecisionsResult) -> str:
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(c.name)}</td><td>{esc(c.status)}</td>"
        f"<td>{_num(c.live, '{:.4g}')}</td><td>{_num(c.baseline, '{:.4g}')}</td>"
        f"<td>{_num(c.ratio, '{:.3g}')}</td><td>{esc(c.detail)}</td></tr>"
        for c in result.checks.values()
    )
    versions = ", ".join(f"v{v} {r:.2%}" for v, r in result.decline_rate_by_version.items())
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>fraudlab decisions</title>"
        "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:4px}"
        "table{border-collapse:collapse}</style></head><body>"
        f"<h1>Decisions: {esc(result.status)}</h1>"
        f"<p>Champion v{esc(str(result.model_version))}, clock {esc(result.clock)}."
        f" {result.n_window} decisions in the window ({result.n_champion} the champion's,"
        f" {result.span_hours:.1f} h); decline rate by version: {esc(versions or '–')}.</p>"
        "<table><tr><th>check</th><th>status</th><th>live</th><th>compared with</th>"
        "<th>ratio</th><th>detail</th></tr>" + rows + "</table></body></html>"
    )


def workspace_values(result: DecisionsResult) -> dict[str, float | None]:
    """The numbers charted over runs in the workspace's "decisions" tab."""
    return {
        "decline_rate": result.decline_rate,
        "decline_rate_champion_test": result.baseline_decline_rate,
        "fallback_rate": result.fallback_rate,
        "fraud_rate_matured": result.fraud_rate,
        "fraud_rate_training": result.training_fraud_rate,
        "cost_live_threshold": result.cost_live,
        "cost_optimal_threshold": result.cost_optimal,
        "savings_share": result.savings_share,
    }


def workspace_panels() -> list:
    from monitoring import workspace
    from monitoring.gauges import series

    return [
        workspace.line_panel(
            "Decline rate vs champion test",
            [series("decline_rate", "live (champion)"), series("decline_rate_champion_test")],
        ),
        workspace.line_panel("Fallback rate", [series("fallback_rate", "fallback rate")]),
        workspace.line_panel(
            "Fraud rate (matured) vs training",
            [series("fraud_rate_matured", "matured window"), series("fraud_rate_training")],
        ),
        workspace.line_panel(
            "Cost of the live threshold vs optimal in hindsight",
            [series("cost_live_threshold"), series("cost_optimal_threshold")],
        ),
    ]


def run_decisions(settings: Settings, run_dir: Path | None = None) -> DecisionsResult:
    """Judge the logged decisions against the champion's own figures; write
    ``decisions.json`` and ``decisions.html`` and add the run to the workspace."""
    from pipelines.data import read_clock, read_labels, read_raw

    started = time.perf_counter()
    run_dir = run_dir or sources.new_run_dir(settings)
    bundle = sources.load_champion(settings)
    clock = read_clock(settings)
    since = clock.timestamp() - settings.perf_window_days * DAY_S
    frame = read_decisions(settings, since)
    labels = read_labels(settings, as_of=clock)
    result = compute_decisions(
        frame,
        labels["txn_id"].astype("int64").tolist(),
        read_raw(settings, "transactions")["txn_id"].to_numpy(),
        champion=str(bundle.version),
        baseline=champion_baseline(bundle.directory),
        clock=clock,
        since=since,
        policy=DecisionsPolicy.from_settings(settings),
    )
    result.run_dir = str(run_dir)
    result.workspace_run, result.workspace_error = gauges.record(
        settings,
        monitor="decisions",
        name=f"decisions {run_dir.name}",
        values=workspace_values(result),
        checks=result.verdicts,
        check_noun="checks",
        panels=workspace_panels(),
        metadata={"model_version": str(bundle.version), "status": result.status},
    )
    result.seconds = round(time.perf_counter() - started, 2)
    (run_dir / "decisions.html").write_text(render_html(result))
    (run_dir / "decisions.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return result
