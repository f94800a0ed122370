"""One monitoring run: the chosen monitors into one run folder, and a compact report for people.

Owns: wiring the monitors together (one ``<home>/monitoring/<UTC timestamp>/`` folder per run)
and their terminal summary. Must not: judge anything itself (``monitoring.drift``,
``monitoring.skew`` do).

A finding (warn, alert) is the monitor working, not a failure: the exit code is non-zero only
when a monitor could not run at all.
"""

from __future__ import annotations

import logging
from enum import StrEnum

from rich.console import Console
from rich.table import Table

from fraudlab.settings import Settings
from monitoring import sources
from monitoring.drift import DriftResult, run_drift
from monitoring.skew import SkewResult, run_skew

log = logging.getLogger("fraudlab.monitoring")

COLOURS = {"ok": "green", "warn": "yellow", "alert": "bold red", "insufficient_data": "cyan"}


class Monitor(StrEnum):
    all = "all"
    drift = "drift"
    skew = "skew"


def _status(status: str) -> str:
    return f"[{COLOURS.get(status, 'white')}]{status}[/]"


def print_drift(console: Console, result: DriftResult) -> None:
    title = (
        f"Drift (PSI) {_status(result.status)}: {result.n_current} served vs "
        f"{result.n_reference} training rows, champion v{result.model_version}, "
        f"warn ≥ {result.psi_warn}, alert ≥ {result.psi_alert} ({result.seconds}s)"
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
    if result.status == "insufficient_data":
        console.print(f"{title}\n  no non-fallback predictions logged yet: nothing to compare")
        return
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
    console.print(f"reports: {run_dir}")
    if (sources.workspace_dir(settings)).exists():
        console.print(
            "history: uv run evidently ui --workspace "
            f"{sources.workspace_dir(settings)} --host 127.0.0.1"
        )
    return 1 if failed else 0
