"""Latency SLO: serving's p50 / p95 / p99 over a recent window against the latency budget.

Owns: the latency judgement and its outputs (``latency.json``, ``latency.html`` in the run
folder, percentiles and verdicts in the Evidently workspace's "latency" tab through
``monitoring.gauges``), and the scrape history it differences
(``<home>/monitoring/latency-scrapes.json``).
Must not: send requests to serving (``make loadtest`` does), or change serving's metrics.

Two sources, reported side by side:

1. **The prediction log**: each record's ``latency_ms`` (time inside the scorer: feature lookup,
   transform, inference; HTTP excluded) for the records logged in the last
   ``Settings.latency_window_minutes`` of wall time. Synthetic requests are included — load
   tests are exactly when latency matters — and also reported apart from production traffic.
   Percentiles are exact (``numpy.percentile``, linear interpolation, as ``make bench``).
2. **Serving's /metrics** (Prometheus histograms, cumulative since the worker started): the
   BentoML request duration of successful ``/score`` calls (server side, HTTP included),
   ``fraudlab_feature_lookup_seconds`` and ``fraudlab_model_inference_seconds``. Each run keeps
   its scrape with a timestamp; a run differences the current scrape against the newest kept
   one at least a window old, so its numbers cover the requests since then
   (``basis: since_scrape``). Without such a scrape, or when a count went down (serving
   restarted), the numbers cover everything since serving started (``basis: since_start``).
   Quantiles are estimated from the buckets (linear within a bucket, as Prometheus'
   ``histogram_quantile``); BentoML's buckets around the 10 ms budget are 5, 10 and 25 ms.

Status: ``alert`` when a judged p99 exceeds ``Settings.latency_budget_ms``, ``warn`` above
``latency_warn_ratio`` of it or when the fallback rate (requests answered without stored
features) exceeds ``fallback_rate_warn``, else ``ok``. A source with fewer than
``latency_min_records`` requests is reported but not judged; with neither judged,
``insufficient_data``.

The arithmetic is pure (``percentiles``, ``histogram_quantile``, ``scrape_delta``,
``compute_latency``); ``run_latency`` does the I/O.
"""

from __future__ import annotations

import html
import json
import math
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np

from foundation.settings import Settings
from model.record import PredictionRecord
from monitoring import gauges, sources

Status = Literal["ok", "warn", "alert", "insufficient_data"]
_RANK: dict[str, int] = {"ok": 0, "warn": 1, "alert": 2}
SCRAPES_FILE = "latency-scrapes.json"
SCRAPE_KEEP_S = 24 * 3600.0
SCRAPE_KEEP_MAX = 500
SCRAPE_TIMEOUT_S = 5.0
QUANTILES = (0.5, 0.95, 0.99)
REQUEST = "request"
FEATURE_LOOKUP = "feature_lookup"
INFERENCE = "inference"
# Histograms of /metrics the monitor reads: name, and the labels a sample must carry.
HISTOGRAMS: dict[str, tuple[str, dict[str, str]]] = {
    REQUEST: (
        "bentoml_service_request_duration_seconds",
        {"endpoint": "/score", "http_response_code": "200"},
    ),
    FEATURE_LOOKUP: ("fraudlab_feature_lookup_seconds", {}),
    INFERENCE: ("fraudlab_model_inference_seconds", {}),
}
COUNTERS = {
    "scored": "fraudlab_scored_requests_total",
    "fallbacks": "fraudlab_feature_fallbacks_total",
}

# A scrape: {"histograms": {key: {"buckets": [[le, cumulative count], ...], "count", "sum"}},
#            "counters": {key: value}}
Scrape = dict[str, Any]


@dataclass(frozen=True)
class Percentiles:
    n: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None = None  # exact sources only


def percentiles(values_ms: np.ndarray | list[float]) -> Percentiles:
    """Exact p50 / p95 / p99 / max of latencies in milliseconds."""
    values = np.asarray(values_ms, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return Percentiles(0, None, None, None, None)
    p50, p95, p99 = np.percentile(values, [100 * q for q in QUANTILES])
    return Percentiles(int(values.size), float(p50), float(p95), float(p99), float(values.max()))


def histogram_quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The q-quantile of a cumulative histogram ([(upper bound, count ≤ bound)], +Inf last).

    Linear interpolation inside the bucket holding the rank (Prometheus' histogram_quantile); a
    rank in the +Inf bucket returns the largest finite bound (the true value is above it).
    """
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def share_within(buckets: list[tuple[float, float]], limit: float) -> float | None:
    """Share of observations at or below ``limit`` (exact when ``limit`` is a bucket bound)."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if bound >= limit:
            if math.isinf(bound) or bound == lower_bound:
                return lower_count / total
            inside = (limit - lower_bound) / (bound - lower_bound)
            return (lower_count + inside * (count - lower_count)) / total
        lower_bound, lower_count = bound, count
    return 1.0


def parse_metrics(text: str) -> Scrape:
    """The histograms and counters the monitor needs from a Prometheus text exposition.

    Samples of one histogram with other label values (BentoML's service name, a worker) are
    summed; a histogram missing from the text is absent from the result.
    """
    from prometheus_client.parser import text_string_to_metric_families

    histograms: dict[str, dict[str, Any]] = {}
    counters: dict[str, float] = {}
    by_name = {name: key for key, (name, _) in HISTOGRAMS.items()}
    counter_keys = {name: key for key, name in COUNTERS.items()}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in counter_keys:
                key = counter_keys[sample.name]
                counters[key] = counters.get(key, 0.0) + float(sample.value)
                continue
            for suffix in ("_bucket", "_count", "_sum"):
                base = sample.name.removesuffix(suffix)
                if base != sample.name and base in by_name:
                    break
            else:
                continue
            key = by_name[base]
            wanted = HISTOGRAMS[key][1]
            if any(sample.labels.get(k) != v for k, v in wanted.items()):
                continue
            entry = histograms.setdefault(key, {"buckets": {}, "count": 0.0, "sum": 0.0})
            if suffix == "_bucket":
                le = sample.labels["le"]
                entry["buckets"][le] = entry["buckets"].get(le, 0.0) + float(sample.value)
            else:
                entry[suffix[1:]] += float(sample.value)
    for entry in histograms.values():
        entry["buckets"] = sorted(
            ([float(le), count] for le, count in entry["buckets"].items()), key=lambda b: b[0]
        )
    return {"histograms": histograms, "counters": counters}


def scrape_delta(current: Scrape, previous: Scrape) -> Scrape | None:
    """``current`` minus ``previous``; None when any count went down (serving restarted)."""
    histograms: dict[str, dict[str, Any]] = {}
    for key, entry in current["histograms"].items():
        before = previous["histograms"].get(key)
        if before is None:
            return None
        old = {float(le): count for le, count in before["buckets"]}
        buckets = []
        for le, count in entry["buckets"]:
            diff = count - old.get(float(le), 0.0)
            if diff < 0:
                return None
            buckets.append([le, diff])
        count = entry["count"] - before["count"]
        if count < 0:
            return None
        histograms[key] = {"buckets": buckets, "count": count, "sum": entry["sum"] - before["sum"]}
    counters = {}
    for key, value in current["counters"].items():
        diff = value - previous["counters"].get(key, 0.0)
        if diff < 0:
            return None
        counters[key] = diff
    return {"histograms": histograms, "counters": counters}


def pick_baseline(
    history: list[dict[str, Any]], now: datetime, window_s: float
) -> dict[str, Any] | None:
    """The newest kept scrape taken at least ``window_s`` before ``now`` (None: none is)."""
    old_enough = [
        h for h in history if (now - datetime.fromisoformat(h["at"])).total_seconds() >= window_s
    ]
    return max(old_enough, key=lambda h: h["at"]) if old_enough else None


@dataclass
class LogLatency:
    """Scorer time from the prediction log's ``latency_ms``."""

    all: Percentiles
    production: Percentiles
    synthetic: Percentiles
    records: int  # records logged in the window
    without_latency: int  # records from a serving that did not log latency_ms
    fallbacks: int
    fallback_rate: float | None
    judged: bool
    status: Status


@dataclass
class MetricsLatency:
    """Server-side latency from serving's /metrics histograms (bucket estimates)."""

    basis: Literal["since_scrape", "since_start"]
    since: str | None  # when the baseline scrape was taken (since_scrape)
    request: Percentiles
    feature_lookup: Percentiles
    inference: Percentiles
    request_share_within_budget: float | None
    scored: float | None
    fallbacks: float | None
    fallback_rate: float | None
    judged: bool
    status: Status


@dataclass
class LatencyResult:
    status: Status
    reason: str
    budget_ms: float
    warn_ms: float
    window_minutes: float
    min_records: int
    fallback_rate_warn: float
    log: LogLatency | None = None
    metrics: MetricsLatency | None = None
    metrics_error: str | None = None
    run_dir: str | None = None
    seconds: float | None = None
    workspace_run: str | None = None
    workspace_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge_p99(p99_ms: float | None, budget_ms: float, warn_ratio: float) -> Status:
    if p99_ms is None:
        return "insufficient_data"
    if p99_ms > budget_ms:
        return "alert"
    return "warn" if p99_ms > warn_ratio * budget_ms else "ok"


def histogram_percentiles(entry: dict[str, Any] | None) -> Percentiles:
    """Bucket-estimated p50 / p95 / p99 (ms) of one histogram (seconds)."""
    if entry is None:
        return Percentiles(0, None, None, None)
    buckets = [(float(le), float(c)) for le, c in entry["buckets"]]
    values = [histogram_quantile(buckets, q) for q in QUANTILES]
    p50, p95, p99 = (None if v is None else v * 1000.0 for v in values)
    return Percentiles(int(entry["count"]), p50, p95, p99)


def compute_latency(
    records: list[PredictionRecord],
    scrape: Scrape | None,
    *,
    basis: Literal["since_scrape", "since_start"] = "since_start",
    since: str | None = None,
    budget_ms: float,
    warn_ratio: float,
    min_records: int,
    fallback_rate_warn: float,
    window_minutes: float,
) -> LatencyResult:
    """Judge the window's log records and (optionally) a /metrics scrape or delta; no I/O."""
    result = LatencyResult(
        status="insufficient_data",
        reason="",
        budget_ms=budget_ms,
        warn_ms=warn_ratio * budget_ms,
        window_minutes=window_minutes,
        min_records=min_records,
        fallback_rate_warn=fallback_rate_warn,
    )
    reasons: list[str] = []
    statuses: list[Status] = []

    timed = [r for r in records if r.latency_ms is not None]
    values = np.array([float(r.latency_ms) for r in timed])
    synthetic = np.array([r.synthetic for r in timed], dtype=bool)
    fallbacks = sum(1 for r in records if r.fallback)
    log_all = percentiles(values)
    log = LogLatency(
        all=log_all,
        production=percentiles(values[~synthetic]) if values.size else percentiles([]),
        synthetic=percentiles(values[synthetic]) if values.size else percentiles([]),
        records=len(records),
        without_latency=len(records) - len(timed),
        fallbacks=fallbacks,
        fallback_rate=fallbacks / len(records) if records else None,
        judged=log_all.n >= min_records,
        status="insufficient_data",
    )
    if log.judged:
        log.status = judge_p99(log_all.p99_ms, budget_ms, warn_ratio)
        statuses.append(log.status)
        reasons.append(f"log p99 {log_all.p99_ms:.2f} ms over {log_all.n} requests")
    else:
        reasons.append(
            f"log: {log_all.n} timed requests in the last {window_minutes:g} min"
            f" (fewer than {min_records}: not judged)"
        )
    if log.fallback_rate is not None and log.fallback_rate > fallback_rate_warn:
        statuses.append("warn")
        reasons.append(f"fallback rate {log.fallback_rate:.1%} in the log window")
    result.log = log

    if scrape is not None:
        hist = scrape["histograms"]
        request = histogram_percentiles(hist.get(REQUEST))
        scored = scrape["counters"].get("scored")
        fell_back = scrape["counters"].get("fallbacks")
        request_entry = hist.get(REQUEST)
        metrics = MetricsLatency(
            basis=basis,
            since=since,
            request=request,
            feature_lookup=histogram_percentiles(hist.get(FEATURE_LOOKUP)),
            inference=histogram_percentiles(hist.get(INFERENCE)),
            request_share_within_budget=None
            if request_entry is None
            else share_within(
                [(float(le), float(c)) for le, c in request_entry["buckets"]], budget_ms / 1000.0
            ),
            scored=scored,
            fallbacks=fell_back,
            fallback_rate=(fell_back or 0.0) / scored if scored else None,
            judged=request.n >= min_records,
            status="insufficient_data",
        )
        where = "since the last scrape" if basis == "since_scrape" else "since serving started"
        if metrics.judged:
            metrics.status = judge_p99(request.p99_ms, budget_ms, warn_ratio)
            statuses.append(metrics.status)
            reasons.append(
                f"/metrics /score p99 ≈ {request.p99_ms:.1f} ms over {request.n} requests {where}"
            )
        else:
            reasons.append(f"/metrics: {request.n} /score requests {where} (not judged)")
        if metrics.fallback_rate is not None and metrics.fallback_rate > fallback_rate_warn:
            statuses.append("warn")
            reasons.append(f"fallback rate {metrics.fallback_rate:.1%} {where}")
        result.metrics = metrics

    judged = [s for s in statuses if s != "insufficient_data"]
    if judged:
        result.status = max(judged, key=lambda s: _RANK[s])
    result.reason = f"budget {budget_ms:g} ms: " + "; ".join(reasons)
    return result


def _fmt(value: float | None, pattern: str = "{:.2f}") -> str:
    return "–" if value is None else pattern.format(value)


def render_html(result: LatencyResult) -> str:
    rows = []

    def row(name: str, p: Percentiles, status: str = "") -> None:
        over = p.p99_ms is not None and p.p99_ms > result.budget_ms
        style = " style='background:#fdd'" if over else ""
        rows.append(
            f"<tr{style}><td>{html.escape(name)}</td><td>{p.n}</td><td>{_fmt(p.p50_ms)}</td>"
            f"<td>{_fmt(p.p95_ms)}</td><td>{_fmt(p.p99_ms)}</td><td>{_fmt(p.max_ms)}</td>"
            f"<td>{status}</td></tr>"
        )

    if result.log is not None:
        row("log: all (scorer time)", result.log.all, result.log.status)
        row("log: production", result.log.production)
        row("log: synthetic (load tests)", result.log.synthetic)
    if result.metrics is not None:
        m = result.metrics
        basis = f"since scrape at {m.since}" if m.basis == "since_scrape" else "since start"
        row(f"/metrics: /score request ({basis})", m.request, m.status)
        row("/metrics: feature lookup", m.feature_lookup)
        row("/metrics: inference", m.inference)
    fallback = ""
    if result.log is not None and result.log.fallback_rate is not None:
        fallback = f" Fallback rate in the log window: {result.log.fallback_rate:.2%}."
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>fraudlab latency</title>"
        "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:4px}"
        "table{border-collapse:collapse}</style></head><body>"
        f"<h1>Latency SLO: {html.escape(result.status)}</h1>"
        f"<p>{html.escape(result.reason)}.{fallback}</p>"
        + (
            f"<p>/metrics unavailable: {html.escape(result.metrics_error)}</p>"
            if result.metrics_error
            else ""
        )
        + "<table><tr><th>source</th><th>n</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th>"
        "<th>max ms</th><th>status</th></tr>" + "".join(rows) + "</table>"
        "<p>Log: exact percentiles of latency_ms (scorer time, HTTP excluded). /metrics:"
        " estimated from histogram buckets (server side, HTTP included for /score).</p>"
        "</body></html>"
    )


def _load_history(path: Path) -> list[dict[str, Any]]:
    try:
        return list(json.loads(path.read_text()))
    except (FileNotFoundError, ValueError):
        return []


def _save_history(path: Path, history: list[dict[str, Any]], now: datetime) -> None:
    """Keep a day of scrapes, plus the newest older one (the baseline of the next run)."""
    history = sorted(history, key=lambda h: h["at"])
    recent = [
        h
        for h in history
        if (now - datetime.fromisoformat(h["at"])).total_seconds() < SCRAPE_KEEP_S
    ]
    older = [h for h in history if h not in recent]
    kept = (older[-1:] + recent)[-SCRAPE_KEEP_MAX:]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(kept))
    tmp.replace(path)  # a concurrent run (CLI and DAG) never reads half a file


def workspace_values(result: LatencyResult) -> dict[str, float | None]:
    """The numbers charted over runs in the workspace's "latency" tab (milliseconds)."""
    values: dict[str, float | None] = {"budget_ms": result.budget_ms}
    if result.log is not None:
        log = result.log
        values |= {
            "log_p50_ms": log.all.p50_ms,
            "log_p95_ms": log.all.p95_ms,
            "log_p99_ms": log.all.p99_ms,
            "log_production_p99_ms": log.production.p99_ms,
            "log_synthetic_p99_ms": log.synthetic.p99_ms,
            "fallback_rate": log.fallback_rate,
        }
    if result.metrics is not None:
        m = result.metrics
        values |= {
            "metrics_request_p99_ms": m.request.p99_ms,
            "metrics_feature_lookup_p99_ms": m.feature_lookup.p99_ms,
            "metrics_inference_p99_ms": m.inference.p99_ms,
        }
    return values


def workspace_panels() -> list:
    from monitoring import workspace
    from monitoring.gauges import series

    return [
        workspace.line_panel(
            "p99 vs budget (ms)",
            [
                series("log_p99_ms", "scorer p99 (log)"),
                series("metrics_request_p99_ms", "/score p99 (/metrics, HTTP included)"),
                series("budget_ms", "budget"),
            ],
        ),
        workspace.line_panel(
            "Scorer latency from the log (ms)",
            [
                series("log_p50_ms", "p50"),
                series("log_p95_ms", "p95"),
                series("log_production_p99_ms", "p99 production"),
                series("log_synthetic_p99_ms", "p99 synthetic"),
            ],
        ),
        workspace.line_panel(
            "Where the time goes: p99 by stage (/metrics, ms)",
            [
                series("metrics_feature_lookup_p99_ms", "feature lookup"),
                series("metrics_inference_p99_ms", "transform + inference"),
            ],
        ),
        workspace.line_panel("Fallback rate", [series("fallback_rate", "fallback rate")]),
    ]


def run_latency(settings: Settings, run_dir: Path | None = None) -> LatencyResult:
    """Judge the last ``latency_window_minutes`` of serving latency against the budget."""
    import httpx

    started = time.perf_counter()
    run_dir = run_dir or sources.new_run_dir(settings)
    now = datetime.now(UTC)
    window_s = settings.latency_window_minutes * 60.0
    records = sources.read_log(
        settings.prediction_log_dir,
        logged_since=now - timedelta(seconds=window_s),
        include_fallback=True,
        include_synthetic=True,
    )

    scrape: Scrape | None = None
    basis: Literal["since_scrape", "since_start"] = "since_start"
    since: str | None = None
    error: str | None = None
    try:
        response = httpx.get(f"{settings.serving_base_url}/metrics", timeout=SCRAPE_TIMEOUT_S)
        response.raise_for_status()
        current = parse_metrics(response.text)
    except (httpx.HTTPError, ValueError) as exc:
        current = None
        error = f"{type(exc).__name__}: {exc} (is serving up? `make status`)"
    if current is not None:
        path = settings.monitoring_dir / SCRAPES_FILE
        history = _load_history(path)
        baseline = pick_baseline(history, now, window_s)
        delta = None if baseline is None else scrape_delta(current, baseline["scrape"])
        if delta is not None and baseline is not None:
            scrape, basis, since = delta, "since_scrape", baseline["at"]
        else:
            scrape = current
        _save_history(path, [*history, {"at": now.isoformat(), "scrape": current}], now)

    result = compute_latency(
        records,
        scrape,
        basis=basis,
        since=since,
        budget_ms=settings.latency_budget_ms,
        warn_ratio=settings.latency_warn_ratio,
        min_records=settings.latency_min_records,
        fallback_rate_warn=settings.fallback_rate_warn,
        window_minutes=settings.latency_window_minutes,
    )
    result.metrics_error = error
    result.run_dir = str(run_dir)
    checks = {}
    if result.log is not None and result.log.judged:
        checks["p99 (log)"] = result.log.status
    if result.metrics is not None and result.metrics.judged:
        checks["p99 (/metrics)"] = result.metrics.status
    result.workspace_run, result.workspace_error = gauges.record(
        settings,
        monitor="latency",
        name=f"latency {run_dir.name}",
        values=workspace_values(result),
        checks=checks,
        check_noun="p99 sources",
        panels=workspace_panels(),
        metadata={"status": result.status},
    )
    result.seconds = round(time.perf_counter() - started, 2)
    (run_dir / "latency.html").write_text(render_html(result))
    (run_dir / "latency.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return result
