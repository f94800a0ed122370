"""The retrain and monitoring DAGs run for real (``airflow dags test``) against the shared stack.

Each DAG is run the way a user runs it (``fraudlab retrain``, ``fraudlab monitor-dag``: an
isolated Airflow home under the stack's home, SQLite metadata). No ``/score`` requests are
sent; the retrain is rolled back at the end, so the registry is left as it was found
(champion unchanged, no challenger) for the other files sharing the stack.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest

from model.registry import CHALLENGER, CHAMPION, client, resolve_alias, version_tags

pytestmark = [pytest.mark.integration, pytest.mark.slow]


RETRAIN_TASKS = (
    "validate_data",
    "build_training_set",
    "train",
    "evaluate",
    "gates",
    "register",
    "promote",
    "reload_serving",
)


def _ended(output: str, task_id: str) -> bool:
    return f"[DAG TEST] end task task_id={task_id} " in output


def test_retrain_dag_trains_gates_promotes_and_reloads_serving(stack) -> None:
    settings = stack.settings
    champion_before = resolve_alias(settings, CHAMPION)
    assert champion_before is not None

    started = time.perf_counter()
    result = stack.cli("retrain", timeout=1200)
    print(
        f"fraudlab retrain (airflow dags test fraudlab_retrain): {time.perf_counter() - started:.1f}s"
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    for task_id in RETRAIN_TASKS:
        assert _ended(output, task_id), f"task {task_id} did not run:\n{output[-4000:]}"
    # the stages shared one run directory, which holds every stage's output
    runs = sorted(settings.training_dir.iterdir())
    assert runs, f"no training run under {settings.training_dir}"
    for name in ("run.json", "training_set.parquet", "fit.json", "gates.json", "registered.json"):
        assert (runs[-1] / name).exists(), f"{name} missing from {runs[-1]}"
    assert (runs[-1] / "bundle" / "model.onnx").exists()

    # an equal-quality retrain passes the gates: champion moved, challenger alias consumed
    champion_after = resolve_alias(settings, CHAMPION)
    assert champion_after is not None and champion_after[0] != champion_before[0]
    assert resolve_alias(settings, CHALLENGER) is None
    # the last task reloaded serving: it already runs the new champion, no poll needed
    assert f'"model_version":"{champion_after[0]}"' in output.replace(" ", "")
    reloaded = httpx.post(f"{stack.url}/reload", json={}, timeout=10.0).json()
    assert reloaded["model_version"] == champion_after[0]

    # leave the registry and serving as found for the other files sharing the stack
    rolled = stack.cli("rollback")
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert resolve_alias(settings, CHAMPION)[0] == champion_before[0]
    httpx.post(f"{stack.url}/reload", json={}, timeout=10.0).raise_for_status()


def test_a_retrain_the_gates_refuse_registers_nothing_and_leaves_the_champion(stack) -> None:
    """A weakened training configuration: the gates task fails with the report, at once (a
    verdict is not retried), and nothing after it runs."""
    settings = stack.settings
    champion_before = resolve_alias(settings, CHAMPION)
    registry = client(settings)
    versions_before = len(registry.search_model_versions(f"name='{settings.model_name}'"))
    weak = {
        "FRAUDLAB_TRAIN_LGBM_PARAMS": json.dumps({"num_leaves": 4, "feature_fraction": 0.2}),
        "FRAUDLAB_TRAIN_NUM_BOOST_ROUND": "40",
    }
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "fraudlab.cli", "retrain"],
        env={**stack.env, **weak},
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    print(f"\nfraudlab retrain refused by the gates: {time.perf_counter() - started:.1f}s")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-6000:]
    assert _ended(output, "gates") and not _ended(output, "register"), output[-6000:]
    assert "| quality | **FAIL** |" in output
    assert "AirflowFailException" in output and "up_for_retry" not in output
    assert resolve_alias(settings, CHAMPION) == champion_before
    assert resolve_alias(settings, CHALLENGER) is None
    assert len(registry.search_model_versions(f"name='{settings.model_name}'")) == versions_before
    run = max(settings.training_dir.iterdir())
    assert json.loads((run / "gates.json").read_text())["passed"] is False
    assert not (run / "registered.json").exists()


def test_monitor_dag_judges_the_log_and_decides(stack) -> None:
    started = time.perf_counter()
    result = stack.cli("monitor-dag", timeout=900)
    print(
        f"fraudlab monitor-dag (airflow dags test fraudlab_monitor): {time.perf_counter() - started:.1f}s"
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    for task_id in ("open_run", "drift", "skew", "decide"):
        assert _ended(output, task_id), f"task {task_id} did not run:\n{output[-4000:]}"
    # exactly one branch ran; the other was skipped
    assert _ended(output, "trigger_retrain") != _ended(output, "no_retrain")
    if _ended(output, "trigger_retrain"):
        assert "drift alert:" in output
    else:
        assert "no retrain" in output
    assert list((settings_dir := stack.settings.monitoring_dir).iterdir()), settings_dir


@pytest.mark.production_traffic  # needs served requests in the log: runs after the other files
def test_a_drift_alert_runs_the_retrain_it_triggers_end_to_end(stack) -> None:
    """Thresholds low enough that the requests already logged alert: the monitoring DAG
    triggers fraudlab_retrain, and `fraudlab monitor-dag` runs that retrain (there is no
    scheduler) through gates, promotion and a serving reload, and says so."""
    from monitoring import sources

    settings = stack.settings
    champion_before = resolve_alias(settings, CHAMPION)
    # the window: every production request logged so far, whatever event time it spans
    logged = sources.read_window(settings.prediction_log_dir, hours=24 * 365)
    assert len(logged) >= 20, f"only {len(logged)} production requests in the log"
    alert_on_anything = {
        "FRAUDLAB_PSI_WARN": "0.00005",
        "FRAUDLAB_PSI_ALERT": "0.0001",
        "FRAUDLAB_MONITOR_MIN_RECORDS": "20",
        "FRAUDLAB_MONITOR_WINDOW_HOURS": str(sources.span_hours(logged)),
        # the whole log, whichever serving release scored it: other files deploy releases
        "FRAUDLAB_MONITOR_CURRENT_RELEASE_ONLY": "false",
    }
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "fraudlab.cli", "monitor-dag"],
        env={**stack.env, **alert_on_anything},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    print(f"\nmonitor-dag with a forced drift alert: {time.perf_counter() - started:.1f}s")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "drift alert:" in output and _ended(output, "trigger_retrain"), output[-6000:]
    assert "fraudlab_monitor triggered fraudlab_retrain (drift alert; run" in output
    for task_id in RETRAIN_TASKS:
        assert _ended(output, task_id), f"retrain task {task_id} did not run:\n{output[-4000:]}"
    assert "✓ fraudlab_monitor triggered fraudlab_retrain (drift alert): run" in output
    assert "succeeded" in output

    # the training run knows why it ran, and so does the registered version
    run = json.loads(max(settings.training_dir.glob("*/run.json")).read_text())
    assert run["reason"] == "drift alert"
    champion_after = resolve_alias(settings, CHAMPION)
    assert champion_after[0] != champion_before[0]
    assert version_tags(settings, champion_after[0])["retrain_reason"] == "drift alert"

    rolled = stack.cli("rollback")
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert resolve_alias(settings, CHAMPION)[0] == champion_before[0]
    httpx.post(f"{stack.url}/reload", json={}, timeout=30.0).raise_for_status()
