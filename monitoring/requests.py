"""Requests that never became a normal decision: refusals and fallbacks, and the online store's
coverage that causes most of them.

Owns: the "requests" monitor. Over the same event-time window the drift monitor judges
(``monitor_window_hours`` back from the newest logged request), it counts the requests serving
refused (the rejection log: an unknown user or merchant answered 422) and those it answered
from request fields alone (fallbacks), each by reason, and judges their rates against what the
champion was evaluated on — a holdout where every entity is known and every feature is there,
so a healthy stack's rates sit near zero. It also samples entities of every batch feature view
from the offline tables up to that view's last materialisation and asks the online store for
them: an entity the offline table has and the online store lacks is a coverage gap
(incremental materialisation never restores a row deleted from the online store; a full
``make features`` does).

Must not: score, write the logs (``serving.prediction_log``), or change the online store.
"""

from __future__ import annotations

import html
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from foundation.settings import Settings
from model.record import PredictionRecord, RejectionRecord
from monitoring import gauges, sources

Status = Literal["ok", "warn", "alert", "insufficient_data"]
COVERAGE_SAMPLE_SEED = 0


@dataclass
class ViewCoverage:
    view: str
    entity: str
    sampled: int
    missing: int
    examples: list[int] = field(default_factory=list)

    @property
    def coverage(self) -> float | None:
        return None if not self.sampled else 1.0 - self.missing / self.sampled


@dataclass
class RequestsResult:
    status: Status
    answered: int  # production requests answered in the window (fallbacks included)
    rejected: int  # production requests refused in the window
    rejections_by_reason: dict[str, int] = field(default_factory=dict)
    fallbacks_by_reason: dict[str, int] = field(default_factory=dict)
    coverage: list[ViewCoverage] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    window_hours: float = 0.0
    run_dir: str | None = None
    seconds: float | None = None
    workspace_run: str | None = None
    workspace_error: str | None = None

    @property
    def total(self) -> int:
        return self.answered + self.rejected

    @property
    def rejection_rate(self) -> float | None:
        return self.rejected / self.total if self.total else None

    @property
    def fallback_rate(self) -> float | None:
        fallbacks = sum(self.fallbacks_by_reason.values())
        return fallbacks / self.answered if self.answered else None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rejection_rate"] = self.rejection_rate
        data["fallback_rate"] = self.fallback_rate
        for entry, view in zip(data["coverage"], self.coverage, strict=True):
            entry["coverage"] = view.coverage
        return data


def _rate_status(rate: float | None, warn: float, alert: float) -> Status:
    if rate is None:
        return "ok"
    return "alert" if rate >= alert else "warn" if rate >= warn else "ok"


def compute_requests(
    answered: list[PredictionRecord],
    rejected: list[RejectionRecord],
    coverage: list[ViewCoverage],
    *,
    rejection_warn: float,
    rejection_alert: float,
    fallback_warn: float,
    fallback_alert: float,
    coverage_warn: float,
    coverage_alert: float,
    min_requests: int,
) -> RequestsResult:
    """Judge a window's refusals, fallbacks and the store's coverage (pure: no I/O)."""
    result = RequestsResult(
        "ok",
        answered=len(answered),
        rejected=len(rejected),
        rejections_by_reason=dict(Counter(r.reason for r in rejected)),
        fallbacks_by_reason=dict(
            Counter(r.fallback_reason or "unknown" for r in answered if r.fallback)
        ),
        coverage=coverage,
    )
    statuses: list[Status] = []
    if result.total >= min_requests:
        for reason, n in sorted(result.rejections_by_reason.items()):
            status = _rate_status(n / result.total, rejection_warn, rejection_alert)
            statuses.append(status)
            if status != "ok":
                result.findings.append(
                    f"{n / result.total:.1%} of requests refused as {reason} ({n:,} of"
                    f" {result.total:,}; the champion's evaluation had none)"
                )
        for reason, n in sorted(result.fallbacks_by_reason.items()):
            status = _rate_status(n / max(result.answered, 1), fallback_warn, fallback_alert)
            statuses.append(status)
            if status != "ok":
                result.findings.append(
                    f"{n / result.answered:.1%} of answers were fallbacks ({reason}): scored"
                    " without stored features"
                )
    for view in coverage:
        share = view.coverage
        if share is None:
            continue
        status: Status = (
            "alert" if share < coverage_alert else "warn" if share < coverage_warn else "ok"
        )
        if status != "ok":
            result.findings.append(
                f"online store lacks {view.missing} of {view.sampled} sampled {view.entity}s"
                f" that {view.view}'s offline table has (e.g. {view.examples[:3]}): a full"
                " `make features` rebuilds them"
            )
        statuses.append(status)
    if result.total < min_requests and not coverage:
        result.status = "insufficient_data"
    elif "alert" in statuses:
        result.status = "alert"
    elif "warn" in statuses:
        result.status = "warn"
    return result


def online_coverage(settings: Settings, sample: int) -> list[ViewCoverage]:
    """For every batch feature view with one entity: entities sampled from its offline table,
    up to its last materialisation, that the online store does not return."""
    from features.store import open_store

    store = open_store(settings)
    rng = np.random.default_rng(COVERAGE_SAMPLE_SEED)
    out: list[ViewCoverage] = []
    for view in sorted(store.list_batch_feature_views(), key=lambda v: v.name):
        keys = list(view.entity_columns)
        path = getattr(view.batch_source, "path", None)
        end = view.most_recent_end_time
        if len(keys) != 1 or not path or end is None or not Path(path).exists():
            continue
        key = keys[0].name
        table = pd.read_parquet(path, columns=[key, "event_timestamp"])
        # what the last materialisation wrote: a row within the view's TTL before its end
        ttl = view.ttl if view.ttl else pd.Timedelta(days=3650)
        end_ts = pd.Timestamp(end)
        end_ts = end_ts.tz_convert("UTC") if end_ts.tzinfo else end_ts.tz_localize("UTC")
        stamps = pd.to_datetime(table["event_timestamp"], utc=True)
        known = table.loc[(stamps <= end_ts) & (stamps > end_ts - ttl), key].unique()
        if not len(known):
            continue
        chosen = rng.choice(known, size=min(sample, len(known)), replace=False)
        features = [f"{view.name}:{f.name}" for f in view.features]
        found = store.get_online_features(
            features=features, entity_rows=[{key: int(e)} for e in chosen]
        ).to_dict()
        names = [f.name for f in view.features]
        missing = [
            int(e)
            for i, e in enumerate(chosen)
            if all(found.get(name, [None] * len(chosen))[i] is None for name in names)
        ]
        out.append(ViewCoverage(view.name, key, len(chosen), len(missing), missing[:10]))
    return out


def workspace_panels() -> list:
    from monitoring import workspace

    return [
        workspace.line_panel(
            "Refused and fallback share of requests",
            [
                gauges.series("rejection_rate", "refused"),
                gauges.series("fallback_rate", "fallbacks"),
            ],
            description="monitoring/requests.py: the rejection log and the prediction log",
        ),
        workspace.line_panel(
            "Online-store coverage (lowest view)",
            [gauges.series("min_coverage", "coverage")],
            description="sampled offline entities the online store returns",
        ),
    ]


def render_html(result: RequestsResult) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(kind)}</td><td>{html.escape(reason)}</td><td>{n}</td></tr>"
        for kind, counts in (
            ("refused", result.rejections_by_reason),
            ("fallback", result.fallbacks_by_reason),
        )
        for reason, n in counts.items()
    )
    cover = "".join(
        f"<tr><td>{html.escape(v.view)}</td><td>{v.sampled}</td><td>{v.missing}</td></tr>"
        for v in result.coverage
    )
    findings = "".join(f"<li>{html.escape(f)}</li>" for f in result.findings)
    return (
        f"<html><body><h1>Requests: {result.status}</h1>"
        f"<p>{result.answered} answered, {result.rejected} refused in the last"
        f" {result.window_hours:g} h of event time</p><ul>{findings}</ul>"
        f"<table><tr><th>kind</th><th>reason</th><th>requests</th></tr>{rows}</table>"
        f"<h2>Online store coverage</h2><table><tr><th>view</th><th>sampled</th>"
        f"<th>missing</th></tr>{cover}</table></body></html>"
    )


def run_requests(settings: Settings, run_dir: Path | None = None) -> RequestsResult:
    """The monitor: the window from the logs, coverage from the stores, a verdict and reports."""
    started = time.perf_counter()
    run_dir = run_dir or sources.new_run_dir(settings)
    hours = settings.monitor_window_hours
    answered = sources.read_window(settings.prediction_log_dir, hours, include_fallback=True)
    newest = answered[-1].event_ts if answered else None
    rejected = sources.read_rejections(
        settings.prediction_log_dir,
        since_event_ts=None if newest is None else newest - hours * 3600.0,
    )
    if newest is None and rejected:  # every request refused: the window ends at the newest
        newest = max(r.event_ts for r in rejected)
        rejected = [r for r in rejected if r.event_ts >= newest - hours * 3600.0]
    result = compute_requests(
        answered,
        rejected,
        online_coverage(settings, settings.coverage_sample),
        rejection_warn=settings.rejection_rate_warn,
        rejection_alert=settings.rejection_rate_alert,
        fallback_warn=settings.fallback_rate_warn,
        fallback_alert=settings.fallback_rate_alert,
        coverage_warn=settings.coverage_warn,
        coverage_alert=settings.coverage_alert,
        min_requests=settings.monitor_min_records,
    )
    result.window_hours = hours
    result.run_dir = str(run_dir)
    if result.status != "insufficient_data":
        covered = [v.coverage for v in result.coverage if v.coverage is not None]
        result.workspace_run, result.workspace_error = gauges.record(
            settings,
            monitor="requests",
            name=f"requests {run_dir.name}",
            values={
                "rejection_rate": result.rejection_rate,
                "fallback_rate": result.fallback_rate,
                "min_coverage": min(covered) if covered else None,
            },
            checks={
                **{f"refused {k}": "alert" for k in result.rejections_by_reason},
                "requests": result.status,
            },
            check_noun="request checks",
            panels=workspace_panels(),
        )
    result.seconds = round(time.perf_counter() - started, 2)
    (run_dir / "requests.html").write_text(render_html(result))
    (run_dir / "requests.json").write_text(
        json.dumps(result.to_dict(), indent=2, default=str) + "\n"
    )
    return result
