"""The nightly materialisation of the online store stopped: its schedule is paused.

inject: pauses the ``fraudlab_materialize`` job in the stack's schedule registry
(``pipelines.schedules``; the traffic simulator is its runner and skips it while paused) and
fast-forwards traffic until the clock stands the seed's number of hours after the last
materialisation. Serving keeps answering from an online store whose batch views age by the hour:
the freshness monitor alerts, the skew monitor sees served batch features differ from their
point-in-time values, ``fraudlab status`` lists the paused job.

verify (outcomes): every batch feature view is within its freshness SLA at the clock (the
freshness monitor's own judgement, run without writing a report), and the nightly job will run
at the next simulated midnight (the registry the runner asks). A one-off ``make materialize``
passes the first and fails the second; resuming without materialising passes the second and
fails the first until the next midnight has run.

reset: resumes the job (the registry is not part of the engine's baseline, which restores the
clock, the data and the feature store).
"""

from __future__ import annotations

import math

import pandas as pd

from lab import Check, Level, ScenarioContext

JOB = "fraudlab_materialize"


def _job_runs(ctx: ScenarioContext) -> Check:
    return Check(
        "the nightly refresh of the online store runs at the next simulated midnight",
        ctx.schedule_active(JOB),
        "; ".join(ctx.describe_schedules()),
        level=Level.PREVENTED,  # fresh now is a fix; fresh after tonight too keeps it fixed
    )


def nightly_job_runs(ctx: ScenarioContext) -> Check:
    """Steady state: nothing holds the nightly job (another incident may not have left it)."""
    return _job_runs(ctx)


def inject(ctx: ScenarioContext) -> None:
    if ctx.private.get("injected"):
        return
    ctx.private["ticket"] = f"FRAUD-{ctx.rng.randint(400, 999)}"
    clock = ctx.clock()
    _, views = ctx.judge_freshness()
    ends = [pd.Timestamp(v.materialized_until) for v in views if v.materialized_until]
    # the nightly job last ran at the latest midnight the batch views reached (not user_profile,
    # which is loaded a day ahead)
    last_run = min(ends) if ends else clock.floor("D")
    target = last_run + pd.Timedelta(hours=int(ctx.variant["hours_stale"]))
    hours = max(0.0, (target - clock).total_seconds() / 3600.0)
    ctx.pause_schedule(JOB)
    ctx.log(f"paused {JOB} at clock {clock}; fast-forwarding {hours:.1f} h to {target}")
    if hours > 0:
        ctx.fast_forward(math.ceil(hours * 10) / 10)
    ctx.private["injected"] = True


def verify(ctx: ScenarioContext) -> list[Check]:
    result, views = ctx.judge_freshness()
    stale = [f"{v.view} {v.status}: {v.detail}" for v in views if v.status != "ok"]
    return [
        Check(
            "every batch feature view is within its freshness SLA at the simulated clock",
            bool(views) and not stale,
            f"clock {result.clock}: " + ("; ".join(stale) or "all fresh"),
            level=Level.FIXED,
        ),
        _job_runs(ctx),
    ]


def reset(ctx: ScenarioContext) -> None:
    ctx.resume_schedule(JOB)


# --- tests only ------------------------------------------------------------------------------


def symptom(ctx: ScenarioContext) -> list[Check]:
    freshness = ctx.fraudlab("monitor", "freshness")
    status = ctx.fraudlab("status", check=False)
    return [
        Check(
            "the freshness monitor alerts",
            "Feature freshness alert" in freshness.stdout,
            freshness.stdout,
        ),
        Check("fraudlab status shows the held job", "PAUSED" in status.stdout, status.stdout),
    ]


def wrong_fix(ctx: ScenarioContext) -> None:
    """A one-off run of the materialisation DAG: fresh now, stale again after tonight."""
    ctx.fraudlab("materialize", timeout=900)


def reference_fix(ctx: ScenarioContext) -> None:
    ctx.fraudlab("schedule", "resume", JOB)
    ctx.fraudlab("materialize", timeout=900)
