"""Latency SLO: serving's scorer-time p50 / p95 / p99 in the monitors' window, against the budget.

Owns: the latency judgement and its outputs (``latency.json``, ``latency.html`` in the run
folder, percentiles and verdicts in the Evidently workspace's "latency" tab through
``monitoring.gauges``), and the scrape history of serving's /metrics it differences for context
(``<home>/monitoring/latency-scrapes.json``).
Must not: send requests to serving (``make loadtest`` does), or change serving's metrics.

**What is judged: the records the serving release running now logged in the window every other
monitor judges** (``sources.read_served_window``): production requests within
``Settings.monitor_window_hours`` of event time back from the newest (drift's, requests' and
decisions' window), and the synthetic requests (load tests, probes) logged since the first of
those was served — a load test is exactly when latency matters, and it has no place in
simulated time, so wall clock places it. With ``monitor_current_release_only`` (the default)
only the release serving now counts, as for drift, skew and quality: a fixed release stops
alarming on what a slow one logged. Each record's ``latency_ms`` is time inside the scorer
(feature lookup, transform, inference; HTTP parsing and queueing in front of the worker
excluded), so how fast a day was replayed (``fraudlab simulate --fast-forward-hours`` sends as
fast as serving answers) does not decide the verdict; a scorer made slow (oversubscribed
onnxruntime threads, a registry call per request, an uncached feature service) does.
Percentiles are exact (``numpy.percentile``, linear interpolation, as ``make bench``).

Production and synthetic requests are judged apart, each when it holds at least
``latency_min_records`` timed requests: a day of paced production traffic would otherwise
dilute a short slow load test below the p99 (and a load test would dilute a slow day). The
status is the worse of the two: ``alert`` when a p99 exceeds ``Settings.latency_budget_ms``,
``warn`` above ``latency_warn_ratio`` of it or when the window's fallback rate (requests
answered without stored features) exceeds ``fallback_rate_warn``, else ``ok``; with neither
judged, ``insufficient_data``.

**Context, never a verdict: serving's /metrics** (Prometheus histograms, cumulative since the
worker started): the BentoML request duration of successful ``/score`` calls (server side,
HTTP included), ``fraudlab_feature_lookup_seconds`` and ``fraudlab_model_inference_seconds``.
Each run keeps its scrape; the next one differences against it (``basis: since_previous``:
the requests since the previous latency run), or shows everything since serving started
(``basis: since_start``) when there is none or a count went down (serving restarted).
Quantiles are estimated from the buckets (linear within a bucket, as Prometheus'
``histogram_quantile``; BentoML's buckets around a 10 ms budget are 5, 10 and 25 ms). These
numbers cover wall-clock periods that match no window of the other monitors, include time a
request queued behind others (a replay sending as fast as it can, a benchmark saturating the
worker) and outlive a fix until serving restarts: they help locate where time goes (lookup vs
inference) and set no status.

The arithmetic is pure (``percentiles``, ``histogram_quantile``, ``scrape_delta``,
``compute_latency``); ``run_latency`` does the I/O.
"""

from __future__ import annotations

import html
import json
import math
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
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


def pick_baseline(history: list[dict[str, Any]], now: datetime) -> dict[str, Any] | None:
    """The newest kept scrape taken before ``now`` (the previous run's; None: there is none)."""
    earlier = [h for h in history if datetime.fromisoformat(h["at"]) < now]
    return max(earlier, key=lambda h: h["at"]) if earlier else None


@dataclass
class LogLatency:
    """Scorer time from the ``latency_ms`` of the window's records (the judged source)."""

    all: Percentiles
    production: Percentiles
    synthetic: Percentiles
    production_status: Status
    synthetic_status: Status
    records: int  # records in the window
    without_latency: int  # records from a serving that did not log latency_ms
    fallbacks: int
    fallback_rate: float | None
    judged: bool  # production or synthetic held enough timed requests for a verdict
    status: Status
    releases: dict[str, int] = field(default_factory=dict)  # records per serving release
    first_logged_at: str | None = None
    last_logged_at: str | None = None
    span_hours: float = 0.0  # event time the window's production records cover


@dataclass
class MetricsLatency:
    """Server-side latency from serving's /metrics histograms (bucket estimates): context only,
    never part of the status (see the module docstring)."""

    basis: Literal["since_previous", "since_start"]
    since: str | None  # when the previous run's scrape was taken (since_previous)
    request: Percentiles
    feature_lookup: Percentiles
    inference: Percentiles
    request_share_within_budget: float | None
    scored: float | None
    fallbacks: float | None
    fallback_rate: float | None


@dataclass
class LatencyResult:
    status: Status
    reason: str
    budget_ms: float
    warn_ms: float
    window_hours: float
    current_release_only: bool
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


def metrics_context(
    scrape: Scrape, basis: Literal["since_previous", "since_start"], since: str | None, budget_ms
) -> MetricsLatency:
    """What a /metrics scrape (or the difference of two) says, for context."""
    hist = scrape["histograms"]
    request_entry = hist.get(REQUEST)
    scored = scrape["counters"].get("scored")
    fell_back = scrape["counters"].get("fallbacks")
    return MetricsLatency(
        basis=basis,
        since=since,
        request=histogram_percentiles(request_entry),
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
    )


def compute_latency(
    records: list[PredictionRecord],
    scrape: Scrape | None = None,
    *,
    basis: Literal["since_previous", "since_start"] = "since_start",
    since: str | None = None,
    budget_ms: float,
    warn_ratio: float,
    min_records: int,
    fallback_rate_warn: float,
    window_hours: float,
    current_release_only: bool = True,
) -> LatencyResult:
    """Judge the window's records (``sources.read_served_window``); describe a /metrics scrape
    or delta alongside without judging it. No I/O."""
    result = LatencyResult(
        status="insufficient_data",
        reason="",
        budget_ms=budget_ms,
        warn_ms=warn_ratio * budget_ms,
        window_hours=window_hours,
        current_release_only=current_release_only,
        min_records=min_records,
        fallback_rate_warn=fallback_rate_warn,
    )
    timed = [r for r in records if r.latency_ms is not None]
    values = np.array([float(r.latency_ms) for r in timed], dtype=float)
    synthetic = np.array([r.synthetic for r in timed], dtype=bool)
    production_events = sorted(r.event_ts for r in records if not r.synthetic)
    fallbacks = sum(1 for r in records if r.fallback)
    log = LogLatency(
        all=percentiles(values),
        production=percentiles(values[~synthetic]),
        synthetic=percentiles(values[synthetic]),
        production_status="insufficient_data",
        synthetic_status="insufficient_data",
        records=len(records),
        without_latency=len(records) - len(timed),
        fallbacks=fallbacks,
        fallback_rate=fallbacks / len(records) if records else None,
        judged=False,
        status="insufficient_data",
        releases=sources.by_release(records),
        first_logged_at=min((r.logged_at for r in records), default=None),
        last_logged_at=max((r.logged_at for r in records), default=None),
        span_hours=(production_events[-1] - production_events[0]) / 3600.0
        if production_events
        else 0.0,
    )
    reasons: list[str] = []
    statuses: list[Status] = []
    for kind in ("production", "synthetic"):
        p: Percentiles = getattr(log, kind)
        if p.n >= min_records:
            status = judge_p99(p.p99_ms, budget_ms, warn_ratio)
            setattr(log, f"{kind}_status", status)
            statuses.append(status)
            reasons.append(f"{kind} p99 {p.p99_ms:.2f} ms over {p.n:,} requests")
        else:
            reasons.append(f"{kind}: {p.n} timed requests (fewer than {min_records}: not judged)")
    log.judged = bool(statuses)
    if log.judged:
        log.status = max(statuses, key=lambda s: _RANK[s])
    if log.fallback_rate is not None and log.fallback_rate > fallback_rate_warn:
        statuses.append("warn")
        reasons.append(f"fallback rate {log.fallback_rate:.1%}")
    result.log = log
    if statuses:
        result.status = max(statuses, key=lambda s: _RANK[s])
    where = "the current release's" if current_release_only else "every release's"
    result.reason = (
        f"budget {budget_ms:g} ms, {where} requests in the last {window_hours:g} h window: "
        + "; ".join(reasons)
    )
    if scrape is not None:
        result.metrics = metrics_context(scrape, basis, since, budget_ms)
    return result


def _fmt(value: float | None, pattern: str = "{:.2f}") -> str:
    return "–" if value is None else pattern.format(value)


def metrics_basis(metrics: MetricsLatency) -> str:
    """What period a /metrics row covers, in words."""
    if metrics.basis == "since_previous" and metrics.since:
        return f"since the previous run at {metrics.since[11:19]} UTC"
    return "since serving started"


def table_rows(result: LatencyResult) -> list[tuple[str, Percentiles, str]]:
    """(source, percentiles, status) of every row of the latency table: one list of rows and
    labels for the terminal (``monitoring.run``) and the HTML report alike."""
    rows: list[tuple[str, Percentiles, str]] = []
    if result.log is not None:
        log = result.log
        rows.append(("window: production (scorer time)", log.production, log.production_status))
        rows.append(("window: load tests (scorer time)", log.synthetic, log.synthetic_status))
        rows.append(("window: all", log.all, ""))
    if result.metrics is not None:
        m = result.metrics
        rows.append((f"/metrics /score, {metrics_basis(m)}", m.request, "context"))
        rows.append(("/metrics feature lookup", m.feature_lookup, ""))
        rows.append(("/metrics inference", m.inference, ""))
    return rows


def render_html(result: LatencyResult) -> str:
    rows = []
    for name, p, status in table_rows(result):
        over = p.p99_ms is not None and p.p99_ms > result.budget_ms
        style = " style='background:#fdd'" if over and status not in ("", "context") else ""
        rows.append(
            f"<tr{style}><td>{html.escape(name)}</td><td>{p.n}</td><td>{_fmt(p.p50_ms)}</td>"
            f"<td>{_fmt(p.p95_ms)}</td><td>{_fmt(p.p99_ms)}</td><td>{_fmt(p.max_ms)}</td>"
            f"<td>{status}</td></tr>"
        )
    fallback = ""
    if result.log is not None and result.log.fallback_rate is not None:
        fallback = f" Fallback rate in the window: {result.log.fallback_rate:.2%}."
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
        "<p>Window: exact percentiles of latency_ms (scorer time, HTTP excluded) of what the"
        " serving release logged in the monitors' window; production and load tests are judged"
        " apart. /metrics: estimated from histogram buckets (server side, HTTP and queueing"
        " included), shown for context and never judged.</p>"
        "</body></html>"
    )


def _load_history(path: Path) -> list[dict[str, Any]]:
    try:
        return list(json.loads(path.read_text()))
    except (FileNotFoundError, ValueError):
        return []


def _save_history(path: Path, history: list[dict[str, Any]], now: datetime) -> None:
    """Keep a day of scrapes, plus the newest older one."""
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
                series("log_production_p99_ms", "production p99 (scorer, judged)"),
                series("log_synthetic_p99_ms", "load tests p99 (scorer, judged)"),
                series("metrics_request_p99_ms", "/score p99 (/metrics, context)"),
                series("budget_ms", "budget"),
            ],
        ),
        workspace.line_panel(
            "Scorer latency in the window (ms)",
            [
                series("log_p50_ms", "p50"),
                series("log_p95_ms", "p95"),
                series("log_p99_ms", "p99"),
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


def _scrape_context(
    settings: Settings, now: datetime
) -> tuple[Scrape | None, Literal["since_previous", "since_start"], str | None, str | None]:
    """Serving's /metrics now, differenced against the previous run's scrape when that is
    possible: (scrape, basis, since, error)."""
    import httpx

    try:
        response = httpx.get(f"{settings.serving_base_url}/metrics", timeout=SCRAPE_TIMEOUT_S)
        response.raise_for_status()
        current = parse_metrics(response.text)
    except (httpx.HTTPError, ValueError) as exc:
        return (
            None,
            "since_start",
            None,
            f"{type(exc).__name__}: {exc} (is serving up? `make status`)",
        )
    path = settings.monitoring_dir / SCRAPES_FILE
    history = _load_history(path)
    baseline = pick_baseline(history, now)
    delta = None if baseline is None else scrape_delta(current, baseline["scrape"])
    _save_history(path, [*history, {"at": now.isoformat(), "scrape": current}], now)
    if delta is not None and baseline is not None:
        return delta, "since_previous", baseline["at"], None
    return current, "since_start", None, None


def run_latency(settings: Settings, run_dir: Path | None = None) -> LatencyResult:
    """Judge the scorer latency of the monitors' window against the budget (module docstring)."""
    started = time.perf_counter()
    run_dir = run_dir or sources.new_run_dir(settings)
    now = datetime.now(UTC)
    window = sources.read_served_window(
        settings.prediction_log_dir,
        settings.monitor_window_hours,
        current_release_only=settings.monitor_current_release_only,
    )
    scrape, basis, since, error = _scrape_context(settings, now)
    result = compute_latency(
        window,
        scrape,
        basis=basis,
        since=since,
        budget_ms=settings.latency_budget_ms,
        warn_ratio=settings.latency_warn_ratio,
        min_records=settings.latency_min_records,
        fallback_rate_warn=settings.fallback_rate_warn,
        window_hours=settings.monitor_window_hours,
        current_release_only=settings.monitor_current_release_only,
    )
    result.metrics_error = error
    result.run_dir = str(run_dir)
    checks = {}
    if result.log is not None:
        for kind in ("production", "synthetic"):
            status = getattr(result.log, f"{kind}_status")
            if status != "insufficient_data":
                checks[f"p99 ({kind})"] = status
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
