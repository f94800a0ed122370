"""# fraudlab_retrain

Retrain the fraud model and, only if it passes the promotion gates, put it in front of traffic.

Each task is one stage of `pipelines.training` (through `pipelines.tasks`); they share a run
directory `<home>/training/<UTC stamp>/` and pass only its path on.

1. `validate_data`: open the run (clock, training window, feature service and LightGBM
   parameters fixed in `run.json`) and validate the raw transaction feed of its window with
   Great Expectations. A broken feed stops the run here, with the column and the next step.
2. `build_training_set`: point-in-time join through the feature service, validated by the
   training-set suite before anything is fitted (`training_set.parquet`).
3. `train`: LightGBM, Platt calibration, the cost-optimal threshold (`model.lgb.txt`, `fit.json`).
4. `evaluate`: test metrics and slices, ONNX export with its parity check and single-row
   latency; the model bundle as MLflow will store it (`bundle/`).
5. `gates`: the promotion gates, this run's bundle against the champion on the same fresh
   holdout (`pipelines.gates.gate_training_run`). A failed gate fails the task with the gate
   report; nothing is registered and the champion does not move.
6. `register`: the MLflow run (with the gate report) and a registered version, alias
   `challenger`.
7. `promote`: `champion` → the new version; the old one stays as `previous_champion`
   (`make rollback`).
8. `reload_serving`: `POST <serving>/reload`, so serving swaps models now instead of at its
   next poll, and says which version it runs (skipped when serving is not up).

A verdict (failed data validation, failed gate) fails its task without retries: it would not
change. Triggered by `fraudlab_monitor` on a drift alert (conf `reason`), or by hand with
`make retrain` (an isolated `airflow dags test`). Needs MLflow up (`make up`).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

DEFAULT_ARGS = {"owner": "fraudlab", "retries": 1, "retry_delay": timedelta(minutes=1)}


def _stage(function: str, *args: str, **kwargs: str) -> str:
    """``pipelines.tasks.<function>(settings, ...)``. A verdict (failed data validation, failed
    gate) fails the task for good: a retry would reach the same verdict."""
    from airflow.sdk.exceptions import AirflowFailException

    from foundation.settings import get_settings
    from pipelines import tasks
    from pipelines.gates import GateFailure
    from pipelines.validation import DataValidationError

    try:
        return getattr(tasks, function)(get_settings(), *args, **kwargs)
    except (DataValidationError, GateFailure) as exc:
        raise AirflowFailException(str(exc)) from exc


@dag(
    dag_id="fraudlab_retrain",
    doc_md=__doc__,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["fraudlab", "training"],
)
def fraudlab_retrain() -> None:
    @task
    def validate_data(dag_run=None) -> str:
        """Open the training run and validate its raw feed; returns the run directory."""
        reason = ((dag_run.conf if dag_run else None) or {}).get("reason", "manual")
        return _stage("start_training_run", reason=reason)

    @task
    def build_training_set(run_dir: str) -> str:
        """Point-in-time training set through Feast, validated before any fitting."""
        return _stage("build_training_set", run_dir)

    @task
    def train(run_dir: str) -> str:
        """LightGBM, calibration and the cost-optimal threshold."""
        return _stage("train_model", run_dir)

    @task
    def evaluate(run_dir: str) -> str:
        """Metrics, slices, ONNX export and parity, latency; the bundle."""
        return _stage("evaluate_model", run_dir)

    @task
    def gates(run_dir: str) -> str:
        """The promotion gates against the champion; fails with the report unless all pass."""
        return _stage("gate_training_run", run_dir)

    @task
    def register(run_dir: str) -> str:
        """Log the run to MLflow and register the model under the alias 'challenger'."""
        return _stage("register_training_run", run_dir)

    @task
    def promote(run_dir: str) -> str:
        """Move 'champion' to the new version (the old one kept for rollback); its version."""
        return _stage("promote_training_run", run_dir)

    @task
    def reload_serving(version: str) -> str:
        """Ask serving to load the new champion now (skipped when serving is not up)."""
        return _stage("reload_serving", version)

    run_dir = validate_data()
    registered = register(gates(evaluate(train(build_training_set(run_dir)))))
    reload_serving(promote(registered))


fraudlab_retrain()
