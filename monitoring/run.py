"""One monitoring run: the chosen monitors into one run folder, and a compact report for people.

Owns: wiring the monitors together (one ``<home>/monitoring/<UTC timestamp>/`` folder per run)
and their terminal summary. Must not: judge anything itself (``monitoring.drift``,
``monitoring.skew``, ``monitoring.performance``, ``monitoring.decisions``,
``monitoring.freshness``, ``monitoring.latency``, ``monitoring.quality`` do).

A finding (warn, alert) is the monitor working, not a failure: the exit code is non-zero only
when a monitor could not run at all.
"""

from __future__ import annotations

import logging
from enum import StrEnum

from rich.console import Console
from rich.table import Table

from foundation.settings import Settings
from model import registry
from monitoring import sources
from monitoring.decisions import DecisionsResult, run_decisions
from monitoring.drift import DriftResult, run_drift
from monitoring.freshness import FreshnessResult, age_text, duration, run_freshness
from monitoring.latency import LatencyResult, run_latency, table_rows
from monitoring.performance import PerformanceResult, run_performance
from monitoring.quality import QualityResult, run_quality
from monitoring.requests import RequestsResult, run_requests
from monitoring.skew import SkewResult, run_skew

log = logging.getLogger("fraudlab.monitoring")

COLOURS = {"ok": "green", "warn": "yellow", "alert": "bold red", "insufficient_data": "cyan"}


class Monitor(StrEnum):
    all = "all"
    drift = "drift"
    skew = "skew"
    performance = "performance"
    decisions = "decisions"
    freshness = "freshness"
    latency = "latency"
    quality = "quality"
    requests = "requests"


def _status(status: str) -> str:
    return f"[{COLOURS.get(status, 'white')}]{status}[/]"


def print_drift(console: Console, result: DriftResult) -> None:
    title = (
        f"Drift (PSI) {_status(result.status)}: {result.n_current} served vs "
        f"{result.n_reference} training rows, champion v{result.model_version}, "
        f"warn ≥ {result.psi_warn}, alert ≥ {result.psi_alert}, {result.bins} {result.binning}"
        f" bins ({result.seconds}s)"
    )
    if result.status == "insufficient_data":
        console.print(
            f"{title}\n  no verdict: {result.reason} (traffic builds it up: `make simulate`)"
        )
        return
    table = Table(title=title, title_justify="left")
    table.add_column("column")
    table.add_column("PSI", justify="right")
    table.add_column("status")
    for column in sorted(result.columns, key=lambda c: -(c.psi or 0.0)):
        psi = "n/a" if column.psi is None else f"{column.psi:.3f}"
        table.add_row(column.column, psi, _status(column.status))
    console.print(table)


def print_skew(console: Console, result: SkewResult) -> None:
    title = (
        f"Training-serving skew {_status(result.status)}: {result.n_records} served requests"
        f" re-fetched offline, champion v{result.model_version} ({result.seconds}s)"
    )
    releases = ", ".join(f"{name} ({n:,})" for name, n in result.releases.items())
    earlier = ", ".join(f"{name} ({n:,})" for name, n in result.earlier_releases.items())
    if result.status == "insufficient_data":
        if earlier:
            console.print(
                f"{title}\n  nothing scored by the serving release running now yet; left out,"
                f" scored by earlier releases: {earlier}"
            )
        else:
            console.print(f"{title}\n  no non-fallback predictions logged yet: nothing to compare")
        return
    if releases:
        console.print(f"  judged: requests scored by serving release {releases}")
    if earlier:
        console.print(f"  left out, scored by earlier serving releases: {earlier}")
    table = Table(title=title, title_justify="left")
    table.add_column("feature")
    table.add_column("mismatches", justify="right")
    table.add_column("rate", justify="right")
    table.add_column("max |diff|", justify="right")
    for group, features in (("stored", result.features), ("input", result.inputs)):
        for f in features:
            diff = "" if f.max_abs_diff is None else f"{f.max_abs_diff:.3g}"
            style = "bold red" if f.mismatches else None
            table.add_row(
                f"{f.feature} ({group})",
                str(f.mismatches),
                f"{f.mismatch_rate:.1%}",
                diff,
                style=style,
            )
    if result.score is not None:
        s = result.score
        diff = "" if s.max_abs_diff is None else f"{s.max_abs_diff:.3g}"
        rate = f"{s.differing / s.compared:.1%}" if s.compared else ""
        table.add_row(
            f"score (re-run, {s.compared} rows)",
            str(s.differing),
            rate,
            diff,
            style="bold red" if s.differing else None,
        )
    console.print(table)


def _num(value: float | None, pattern: str = "{:.3f}") -> str:
    return "–" if value is None else pattern.format(value)


def print_performance(console: Console, result: PerformanceResult) -> None:
    console.print(
        f"Live performance {_status(result.status)}: {result.n_records} scored transactions,"
        f" clock {result.clock[:16]}, champion v{result.model_version} ({result.seconds}s)\n"
        f"  {result.reason}\n"
        f"  labels: {result.n_matured} of {result.n_labelable} matured"
        f" ({result.matured_share:.0%}, ≥{result.label_maturity_days:g} days);"
        f" expected completeness of the window {_num(result.window_completeness, '{:.0%}')};"
        f" {result.n_unlabelable} with unknown transaction ids cannot be labelled"
    )
    table = Table(title="by label age", title_justify="left")
    for column in ("age", "n", "labels", "complete", "judged", "recall"):
        table.add_column(column, justify="left" if column == "age" else "right")
    table.add_column("precision", justify="right")
    table.add_column("PR-AUC", justify="right")
    for b in result.label_age:
        if not b.n:
            continue
        table.add_row(
            b.bucket,
            str(b.n),
            str(b.positives),
            _num(b.expected_completeness, "{:.0%}"),
            str(b.judged),
            _num(b.metrics.get("recall")),
            _num(b.metrics.get("precision")),
            _num(b.metrics.get("pr_auc")),
        )
    if result.n_labelable:
        console.print(table)


def print_decisions(console: Console, result: DecisionsResult) -> None:
    console.print(
        f"Decisions {_status(result.status)}: {result.n_window:,} decisions in the window"
        f" ({result.n_champion:,} by champion v{result.model_version}, {result.span_hours:.1f} h),"
        f" clock {result.clock[:16]} ({result.seconds}s)"
    )
    table = Table(title_justify="left")
    for column in ("check", "live", "compared with", "ratio", "status"):
        table.add_column(column, justify="left" if column == "check" else "right")
    for c in result.checks.values():
        table.add_row(
            c.name,
            _num(c.live, "{:.4g}"),
            _num(c.baseline, "{:.4g}"),
            _num(c.ratio, "{:.3g}"),
            _status(c.status),
        )
    if result.checks:
        console.print(table)
    for c in result.checks.values():
        if c.status != "ok":
            console.print(f"  {c.name}: {c.detail}", highlight=False)


def print_freshness(console: Console, result: FreshnessResult) -> None:
    table = Table(
        title=f"Feature freshness {_status(result.status)} at clock {result.clock[:16]}"
        f" ({result.seconds}s)",
        title_justify="left",
    )
    for column in ("view", "kind", "age / lag", "SLA", "status", "detail"):
        table.add_column(column)
    for v in result.views:
        detail = "" if v.status == "ok" else v.detail  # ok needs no explaining here
        table.add_row(
            v.view, v.kind, age_text(v.age_s), duration(v.sla_s), _status(v.status), detail
        )
    console.print(table)


def print_latency(console: Console, result: LatencyResult) -> None:
    where = "the serving release's" if result.current_release_only else "every release's"
    table = Table(
        title=f"Latency SLO {_status(result.status)}: p99 budget {result.budget_ms:g} ms,"
        f" {where} requests in the last {result.window_hours:g} h window ({result.seconds}s)",
        title_justify="left",
    )
    for column in ("source", "n", "p50 ms", "p95 ms", "p99 ms", "status"):
        table.add_column(column, justify="left" if column == "source" else "right")

    for name, p, status in table_rows(result):
        table.add_row(
            name,
            str(p.n),
            _num(p.p50_ms, "{:.2f}"),
            _num(p.p95_ms, "{:.2f}"),
            _num(p.p99_ms, "{:.2f}"),
            _status(status) if status else "",
        )
    console.print(table)
    fallback = result.log.fallback_rate if result.log is not None else None
    console.print(
        f"  fallback rate {_num(fallback, '{:.2%}')} in the window; /metrics is context, not"
        " judged (HTTP and queueing included, since a wall-clock moment)"
        + (f"; /metrics unavailable: {result.metrics_error}" if result.metrics_error else "")
    )


def print_quality(console: Console, result: QualityResult) -> None:
    title = (
        f"Request data quality {_status(result.status)}: {result.n_records:,} logged requests, "
        f"{result.n_checks} expectations ({result.seconds}s)"
    )
    if result.status == "insufficient_data":
        console.print(f"{title}\n  nothing logged yet: nothing to check")
        return
    console.print(title)
    for line in result.failures:
        console.print(f"  [bold red]✗[/] {line}", markup=True, highlight=False)


def print_requests(console: Console, result: RequestsResult) -> None:
    rate = result.rejection_rate
    fallback = result.fallback_rate
    title = (
        f"Requests {_status(result.status)}: {result.answered:,} answered, {result.rejected:,}"
        f" refused ({'n/a' if rate is None else f'{rate:.2%}'}), fallbacks"
        f" {'n/a' if fallback is None else f'{fallback:.2%}'} in the last"
        f" {result.window_hours:g} h ({result.seconds}s)"
    )
    console.print(title)
    for name, counts in (
        ("refused", result.rejections_by_reason),
        ("fallback", result.fallbacks_by_reason),
    ):
        if counts:
            console.print(
                f"  {name}: " + ", ".join(f"{reason} {n:,}" for reason, n in counts.items())
            )
    if result.coverage:
        console.print(
            "  online-store coverage: "
            + ", ".join(f"{v.view} {v.sampled - v.missing}/{v.sampled}" for v in result.coverage)
        )
    for line in result.findings:
        console.print(f"  [bold red]✗[/] {line}", markup=True, highlight=False)


def run_monitors(
    settings: Settings, which: Monitor = Monitor.all, console: Console | None = None
) -> int:
    """Run the chosen monitors; 0 when each ran (whatever it found), 1 when one could not."""
    console = console or Console()
    run_dir = sources.new_run_dir(settings)
    failed = False
    if which in (Monitor.all, Monitor.drift):
        try:
            print_drift(console, run_drift(settings, run_dir))
        except Exception as exc:  # noqa: BLE001 - report it, run the other monitor, exit 1
            failed = True
            console.print(f"[bold red]drift monitor failed[/]: {type(exc).__name__}: {exc}")
    if which in (Monitor.all, Monitor.skew):
        try:
            print_skew(console, run_skew(settings, run_dir))
        except Exception as exc:  # noqa: BLE001
            failed = True
            console.print(f"[bold red]skew monitor failed[/]: {type(exc).__name__}: {exc}")
    for monitor, run, show in (
        (Monitor.performance, run_performance, print_performance),
        (Monitor.decisions, run_decisions, print_decisions),
        (Monitor.freshness, run_freshness, print_freshness),
        (Monitor.latency, run_latency, print_latency),
        (Monitor.quality, run_quality, print_quality),
        (Monitor.requests, run_requests, print_requests),
    ):
        if which in (Monitor.all, monitor):
            try:
                show(console, run(settings, run_dir))  # type: ignore[operator]
            except Exception as exc:  # noqa: BLE001
                failed = True
                console.print(
                    f"[bold red]{monitor.value} monitor failed[/]: {type(exc).__name__}: {exc}"
                )
    console.print(registry.champion_gate_summary(settings), markup=False)
    console.print(f"reports: {run_dir}")
    if (sources.workspace_dir(settings)).exists():
        console.print(
            f"history: {settings.evidently_base_url} (Evidently UI, started by `make up`)"
        )
    return 1 if failed else 0
