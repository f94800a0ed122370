"""# fraudlab_monitor

Judge the prediction log, and ask for a retrain when the inputs drifted.

1. `open_run`: one `<home>/monitoring/<UTC timestamp>/` folder for this run's reports.
2. `drift` (`monitoring.drift.run_drift`): PSI per model input and on the score, serving window
   vs the champion's training sample; status ok / warn / alert / insufficient_data.
3. `skew` (`monitoring.skew.run_skew`): served features vs Feast point-in-time, champion
   re-score. Reported, not acted on: skew is a bug to fix, not a reason to retrain.
4. `performance` (`monitoring.performance.run_performance`): decisions joined to the
   chargebacks arrived by the clock; recall and PR-AUC on the part whose labels are complete
   enough, against the champion's test metrics, with how much of the window has matured.
   Beside it, `decisions` (`monitoring.decisions.run_decisions`): the champion's decline rate
   and the fallback rate of the drift window against its test split's decline rate; once
   labels matured, the fraud rate against training and the live threshold's cost against the
   one optimal in hindsight. Reported, not acted on.
5. `freshness` (`monitoring.freshness.run_freshness`): age of each feature view's online values
   at the clock against its `freshness_sla` tag and TTL; serving's velocity pushes read back.
6. `latency` (`monitoring.latency.run_latency`): the scorer's p50/p95/p99 in the monitors'
   window (production and load tests judged apart; /metrics as context) against the latency
   budget, and the fallback rate.
7. `quality` (`monitoring.quality.run_quality`): the logged requests against their Great
   Expectations suite (schema, nulls, ranges, vocabularies, volume).
8. `requests` (`monitoring.requests.run_requests`): refused requests (the rejection log) and
   fallbacks by reason over the drift window, and the online store's coverage of the offline
   tables' entities.
9. `decide`: drift status "alert" → `trigger_retrain` (runs `fraudlab_retrain`), else
   `no_retrain`. Performance, freshness, latency and quality are reported, not acted on: a
   retrain does not fix stale features, a slow server or broken upstream data, and a recall
   drop is for a person to diagnose.

A finding is the monitor working; a task fails only when a monitor could not run (no champion,
MLflow down). Run it with `make monitor-dag` (an isolated `airflow dags test`), which then runs
the retrain a drift alert triggered and says how it ended.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import dag, task

DEFAULT_ARGS = {"owner": "fraudlab", "retries": 1, "retry_delay": timedelta(minutes=1)}
RETRAIN_DAG_ID = "fraudlab_retrain"


@dag(
    dag_id="fraudlab_monitor",
    doc_md=__doc__,
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["fraudlab", "monitoring"],
)
def fraudlab_monitor() -> None:
    @task
    def open_run() -> str:
        """Create this run's report folder (both monitors write into it)."""
        from foundation.settings import get_settings
        from monitoring import sources

        return str(sources.new_run_dir(get_settings()))

    @task
    def drift(run_dir: str) -> str:
        """PSI drift of the served window vs the champion's training sample; returns the status."""
        from pathlib import Path

        from foundation.settings import get_settings
        from monitoring.drift import run_drift

        result = run_drift(get_settings(), Path(run_dir))
        worst = sorted(result.columns, key=lambda c: -(c.psi or 0.0))[:5]
        print(
            f"drift {result.status}: {result.n_current} served vs {result.n_reference} training"
            f" rows, champion v{result.model_version}; highest PSI: "
            + ", ".join(f"{c.column}={c.psi:.3f}" for c in worst if c.psi is not None)
        )
        return result.status

    @task
    def skew(run_dir: str) -> str:
        """Training-serving skew of the logged requests; returns the status."""
        from pathlib import Path

        from foundation.settings import get_settings
        from monitoring.skew import run_skew

        result = run_skew(get_settings(), Path(run_dir))
        mismatched = [f"{f.feature}={f.mismatches}" for f in result.features if f.mismatches]
        print(
            f"skew {result.status}: {result.n_records} requests re-fetched offline, champion"
            f" v{result.model_version}; mismatches: {', '.join(mismatched) or 'none'}"
        )
        return result.status

    @task
    def performance(run_dir: str) -> str:
        """Live performance once chargebacks arrive; returns the status."""
        from pathlib import Path

        from foundation.settings import get_settings
        from monitoring.performance import run_performance

        result = run_performance(get_settings(), Path(run_dir))
        print(f"performance {result.status}: {result.reason}")
        return result.status

    @task
    def decisions(run_dir: str) -> str:
        """Decline, fallback and fraud rates and the threshold's cost; returns the status."""
        from pathlib import Path

        from foundation.settings import get_settings
        from monitoring.decisions import run_decisions

        result = run_decisions(get_settings(), Path(run_dir))
        print(f"decisions {result.status}: {result.reason}")
        return result.status

    @task
    def freshness(run_dir: str) -> str:
        """Online feature freshness per feature view at the stack's clock; returns the status."""
        from pathlib import Path

        from foundation.settings import get_settings
        from monitoring.freshness import run_freshness

        result = run_freshness(get_settings(), Path(run_dir))
        print(
            f"freshness {result.status} at {result.clock}: "
            + "; ".join(f"{v.view} {v.status}: {v.detail}" for v in result.views)
        )
        return result.status

    @task
    def latency(run_dir: str) -> str:
        """Scorer latency in the monitors' window against the budget; returns the status."""
        from pathlib import Path

        from foundation.settings import get_settings
        from monitoring.latency import run_latency

        result = run_latency(get_settings(), Path(run_dir))
        print(f"latency {result.status}: {result.reason}")
        return result.status

    @task
    def quality(run_dir: str) -> str:
        """Logged requests against their data-quality suite; returns the status."""
        from pathlib import Path

        from foundation.settings import get_settings
        from monitoring.quality import run_quality

        result = run_quality(get_settings(), Path(run_dir))
        print(f"request quality {result.status}: " + ("; ".join(result.failures) or "all hold"))
        return result.status

    @task
    def requests(run_dir: str) -> str:
        """Refused requests and fallbacks by reason, and the online store's coverage."""
        from pathlib import Path

        from foundation.settings import get_settings
        from monitoring.requests import run_requests

        result = run_requests(get_settings(), Path(run_dir))
        print(f"requests {result.status}: " + ("; ".join(result.findings) or "nothing refused"))
        return result.status

    @task.branch
    def decide(drift_status: str) -> str:
        """Retrain only on a drift alert; warn and insufficient data are for people to read."""
        if drift_status == "alert":
            return "trigger_retrain"
        print(f"drift status {drift_status!r}: no retrain")
        return "no_retrain"

    run_dir = open_run()
    drift_status = drift(run_dir)
    skew(run_dir)
    performance(run_dir)
    decisions(run_dir)
    freshness(run_dir)
    latency(run_dir)
    quality(run_dir)
    requests(run_dir)
    decide(drift_status) >> [
        TriggerDagRunOperator(
            task_id="trigger_retrain",
            trigger_dag_id=RETRAIN_DAG_ID,
            # "triggered_by" lets `make monitor-dag` (no scheduler) find and run this retrain;
            # the default logical date (now) is what `airflow dags test` replaces it by
            conf={"reason": "drift alert", "triggered_by": "{{ dag.dag_id }}/{{ run_id }}"},
        ),
        EmptyOperator(task_id="no_retrain"),
    ]


fraudlab_monitor()
