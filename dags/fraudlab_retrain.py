"""# fraudlab_retrain

Retrain the fraud model and, if it passes the promotion gates, put it in front of traffic.

1. `validate_data`: Great Expectations suite over the raw transaction feed of the training
   window (`pipelines.validation.validate_raw_window`); a broken feed stops the run before any
   training work.
2. `train_challenger` (`fraudlab.tasks.train_and_register(promote=False)`): point-in-time
   training set through Feast → training-set validation → LightGBM → calibration and
   cost-optimal threshold → evaluation → ONNX export and parity → MLflow registration under
   the alias `challenger`. Today this is one function, so it is one task.
3. `promote`: the promotion gates (challenger vs champion); they move `champion` only when
   every gate passes. Uses `pipelines.gates` when it exists, else the CLI `fraudlab promote`,
   whose exit code decides. A failed gate fails this task and nothing is reloaded.
4. `reload_serving`: `POST <serving>/reload`, so serving swaps models now instead of at its
   next poll; skipped with a log line when serving is not up.

Triggered by `fraudlab_monitor` on a drift alert, or by hand with `make retrain` (an isolated
`airflow dags test`). Needs MLflow up (`make up`).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

DEFAULT_ARGS = {"owner": "fraudlab", "retries": 1, "retry_delay": timedelta(minutes=1)}


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
    def validate_data() -> str:
        """Validate the raw feed of the training window; raise when it fails."""
        from fraudlab.settings import get_settings
        from pipelines import data, training, validation

        settings = get_settings()
        start, end = training.training_window(settings, data.read_clock(settings))
        result = validation.validate_raw_window(settings, start, end)
        if not result.passed:
            raise validation.DataValidationError([result])
        print(result.summary())
        return result.summary()

    @task
    def train_challenger() -> str:
        """Train, evaluate and register a model as the challenger; returns its version."""
        from fraudlab import tasks
        from fraudlab.settings import get_settings

        return tasks.train_and_register(get_settings(), promote=False)

    @task(retries=0)  # a gate verdict does not change on retry
    def promote(version: str) -> str:
        """Run the promotion gates on the challenger; fail unless it became the champion."""
        import importlib
        import importlib.util
        import subprocess
        import sys

        from fraudlab.settings import get_settings

        gates = (
            importlib.import_module("pipelines.gates")
            if importlib.util.find_spec("pipelines.gates")
            else None
        )
        if gates is not None and callable(getattr(gates, "promote", None)):
            from fraudlab.tasks import step

            code, text = gates.promote(get_settings(), progress=step)
            print(text)
        else:
            # the gates' only interface then is the CLI; output streams into this task's log
            code = subprocess.run(
                [sys.executable, "-m", "fraudlab.cli", "promote"], check=False
            ).returncode
        if code != 0:
            raise RuntimeError(
                f"promotion gates refused challenger v{version} (exit code {code}): the "
                "champion did not move; read the gate report above, fix, `make retrain` again"
            )
        return version

    @task
    def reload_serving(version: str) -> None:
        """Ask serving to load the new champion now (skipped when serving is not up)."""
        import httpx

        from fraudlab.settings import get_settings

        url = f"{get_settings().serving_base_url}/reload"
        try:
            response = httpx.post(url, json={}, timeout=30)
        except httpx.TransportError as exc:
            print(
                f"serving is not up at {url} ({type(exc).__name__}): skipping the reload; it "
                f"loads champion v{version} when it starts"
            )
            return
        response.raise_for_status()
        print(f"POST {url} → {response.status_code}: {response.text}")

    validated = validate_data()
    challenger = train_challenger()
    validated >> challenger
    reload_serving(promote(challenger))


fraudlab_retrain()
