"""The drift monitor alarms on healthy traffic because its configuration was "improved".

inject: live overrides of the drift monitor (``fraudlab config``), picked by the seed — a one-hour
window with a low record minimum, Evidently's pooled equal-width bins made finer, or many more
reference bins — then enough simulated traffic that the monitor has a day to judge and the clock
stands in the afternoon (the last hour holds plenty of purchases). Nothing about the traffic or
the model changes: the alarm is the monitor's own.

verify (outcomes, judged with the stack's configuration as it is now — the monitor's own window
reader and judgement, ``monitoring.drift.judge_window`` — on a copy of the latest day of
production traffic, so verify leaves no runs in the candidate's workspace):

1. the drift monitor gives a verdict on that day and raises no alert;
2. the same day with every amount 60 % higher (model inputs rebuilt by the shared transform) does
   alert — a raised alert threshold, a window too long to ever fill or a record minimum nobody
   reaches fail here;
3. the champion is the one that served when the ticket was opened, and serving runs it.

When the live log holds no whole day (a stack without paced traffic, just after reset), the day
inject saw is used: it is kept in the lab's cache, keyed by the generated world and champion.

reset: nothing beyond the engine's baseline (overrides, prediction log, registry).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from lab import Check, Level, ScenarioContext

DAY_H = 24.0
WHOLE_DAY_H = 0.95 * DAY_H  # monitoring.drift's MIN_SPAN_SHARE of a day
AFTERNOON_H = 15  # the clock stops here: the busiest hours of the day are just behind it
AMOUNT_FACTOR = 1.6  # a genuine shift the default monitor flags (PSI ≈ 0.4 on amount inputs)
OVERRIDES = {
    "short_window": {"monitor_window_hours": 1, "monitor_min_records": 50},
    "pooled_bins": {"psi_binning": "pooled", "psi_bins": 100},
    "fine_bins": {"psi_bins": 200},
}
MONITOR_SETTINGS = (
    "monitor_window_hours",
    "monitor_min_records",
    "monitor_window",
    "psi_bins",
    "psi_binning",
    "psi_warn",
    "psi_alert",
)
DAY_FILE = "day.jsonl.gz"  # compressed: no feature name is readable in the lab's files


# --- the day of traffic judged ---------------------------------------------------------------


def _day_cache(ctx: ScenarioContext) -> Path:
    """Where inject keeps a day of healthy production traffic, per world and champion."""
    world = ctx.world_meta()["transactions_hash"]
    champion = ctx.private.get("champion_run") or (ctx.champion() or ("", ""))[1]
    return ctx.cache_dir(f"day-{world}-{champion}") / DAY_FILE


def _latest_day(ctx: ScenarioContext) -> list[dict[str, Any]]:
    """The newest day of production predictions in the live log ([] when it holds less)."""
    return ctx.prediction_window(DAY_H, min_span_hours=WHOLE_DAY_H)


def _healthy_day(ctx: ScenarioContext) -> tuple[list[dict[str, Any]], str]:
    records = _latest_day(ctx)
    if records:
        return records, "the latest day of the live prediction log"
    path = _day_cache(ctx)
    if path.exists():
        from model.record import PredictionRecord

        lines = gzip.decompress(path.read_bytes()).decode().splitlines()
        records = [PredictionRecord.from_json(json.loads(line)) for line in lines if line]
        return records, f"the day kept in {path}"
    return [], "no day of production traffic in the log and none kept"


def _shifted(records: list[dict[str, Any]], factor: float) -> list[dict[str, Any]]:
    """The same purchases with ``factor`` times the amount: model inputs rebuilt by the shared
    transform from what serving logged (request and stored features); scores left as logged."""
    import numpy as np

    from features.transforms import REQUEST_FIELDS, STORED_FEATURES, build_model_inputs

    columns: dict[str, list[Any]] = {
        name: [r.features.get(name) for r in records] for name in STORED_FEATURES
    }
    for name in REQUEST_FIELDS:
        columns[name] = [r.request[name] for r in records]
    columns["amount"] = [float(a) * factor for a in columns["amount"]]
    inputs = build_model_inputs(columns)
    shifted = []
    for i, record in enumerate(records):
        model_inputs = {
            name: float(np.asarray(values)[i])
            for name, values in inputs.items()
            if name in record.model_inputs
        }
        shifted.append(
            dataclasses.replace(record, model_inputs={**record.model_inputs, **model_inputs})
        )
    return shifted


def _judge(ctx: ScenarioContext, records: list[dict[str, Any]], name: str):
    """The drift monitor as configured now, over ``records`` as the prediction log (same
    window reader, same judgement, no report): what ``make monitor M=drift`` would say of that
    traffic."""
    settings = ctx.settings.reloaded()
    log_dir = ctx.work_dir / name
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    (log_dir / "predictions-judged.jsonl").write_text(
        "".join(json.dumps(r.to_json()) + "\n" for r in records)
    )
    try:
        window = ctx.prediction_window(settings.monitor_window_hours, log_dir=log_dir)
        return ctx.judge_drift(window)
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)


def _summary(result) -> str:
    worst = sorted(result.columns, key=lambda c: -(c.psi or 0.0))[:4]
    psis = ", ".join(f"{c.column}={c.psi:.3f}" for c in worst if c.psi is not None)
    return (
        f"{result.status}: {result.n_current} rows over {result.span_hours} h, warn "
        f"{result.psi_warn}, alert {result.psi_alert}, {result.bins} {result.binning} bins; "
        f"{psis or result.reason}"
    )


# --- the verbs ---------------------------------------------------------------------------------


def _hours_to_fast_forward(ctx: ScenarioContext) -> float:
    """Up to the next afternoon at which the log holds a whole day of traffic."""
    clock = ctx.clock()
    window = ctx.prediction_window(2 * DAY_H)
    oldest = pd.Timestamp(window[0].event_ts, unit="s", tz="UTC") if window else clock
    target = clock.floor("D") + pd.Timedelta(hours=AFTERNOON_H)
    while target <= clock or target - pd.Timedelta(hours=DAY_H) < oldest:
        target += pd.Timedelta(days=1)
    return math.ceil((target - clock).total_seconds() / 360.0) / 10.0  # to 0.1 h


def inject(ctx: ScenarioContext) -> None:
    if ctx.private.get("injected"):
        return
    champion = ctx.champion()
    if champion is None:
        raise RuntimeError("no champion to keep watching")
    ctx.private["champion"], ctx.private["champion_run"] = champion
    ctx.private["ticket"] = f"OPS-{ctx.rng.randint(2100, 2999)}"
    overrides = OVERRIDES[str(ctx.variant["setting"])]
    ctx.set_config(**overrides)
    hours = _hours_to_fast_forward(ctx)
    ctx.log(f"monitor overrides {overrides}; fast-forwarding {hours} h of traffic")
    ctx.fast_forward(hours)
    day = _latest_day(ctx)
    if day:
        path = _day_cache(ctx)
        lines = "".join(json.dumps(r.to_json()) + "\n" for r in day)
        path.write_bytes(gzip.compress(lines.encode()))
    ctx.private["injected"] = True


def verify(ctx: ScenarioContext) -> list[Check]:
    checks = []
    records, source = _healthy_day(ctx)
    if not records:
        no_day = f"nothing to judge: {source}"
        checks.append(
            Check(
                "the drift monitor judges a day of traffic without alerting",
                False,
                no_day,
                level=Level.FIXED,
            )
        )
        checks.append(
            Check(
                "a day of traffic with amounts 60 % higher is flagged",
                False,
                no_day,
                level=Level.PREVENTED,
            )
        )
    else:
        quiet = _judge(ctx, records, "a")
        checks.append(
            Check(
                "the drift monitor judges a day of traffic without alerting",
                quiet.status in ("ok", "warn"),
                f"{source}: {_summary(quiet)}",
                level=Level.FIXED,
            )
        )
        moved = _judge(ctx, _shifted(records, AMOUNT_FACTOR), "b")
        checks.append(
            Check(
                "a day of traffic with amounts 60 % higher is flagged",
                moved.status == "alert",
                f"{source}, amounts ×{AMOUNT_FACTOR}: {_summary(moved)}",
                # a monitor quietened until it misses a real shift leaves the next incident
                # unseen: still catching one is what keeps the fix from becoming the fault
                level=Level.PREVENTED,
            )
        )
    champion = ctx.champion()
    served = ctx.served_model_version()
    expected = ctx.private.get("champion") or (champion[0] if champion else None)
    checks.append(
        Check(
            "the model serving traffic is the one that served when the ticket was opened",
            champion is not None and champion[0] == expected and served == expected,
            f"champion {champion and champion[0]}, serving {served}, at break {expected}",
            level=Level.FIXED,
        )
    )
    return checks


def reset(ctx: ScenarioContext) -> None:
    """The overrides, the traffic and any model registered meanwhile are the baseline's to
    restore; nothing else was touched."""


# --- tests only ------------------------------------------------------------------------------


def symptom(ctx: ScenarioContext) -> list[Check]:
    result = ctx.fraudlab("monitor", "drift")
    config = ctx.fraudlab("config")
    changed = [name for name in OVERRIDES[str(ctx.variant["setting"])] if name in config.stdout]
    return [
        Check("the drift monitor alerts", "Drift (PSI) alert" in result.stdout, result.stdout),
        Check("fraudlab config shows the changed monitor settings", bool(changed), config.stdout),
    ]


def wrong_fix(ctx: ScenarioContext) -> None:
    """Silence the pager: an alert threshold above every PSI the monitor reports now."""
    result = ctx.run_drift_monitor()
    highest = max((c.psi or 0.0) for c in result.columns) if result.columns else 1.0
    threshold = math.ceil(highest * 1.5 * 10) / 10
    ctx.fraudlab("config", "set", f"psi_alert={threshold}", f"psi_warn={threshold / 2:.2f}")


def reference_fix(ctx: ScenarioContext) -> None:
    """Back to the monitor's documented configuration: drop the overrides of its settings
    (the ones the seed changed, and a threshold raised on the way)."""
    ctx.fraudlab("config", "unset", *MONITOR_SETTINGS)
