"""The retrain and monitoring DAGs run for real (``airflow dags test``) against the shared stack.

Each DAG is run the way a user runs it (``fraudlab retrain``, ``fraudlab monitor-dag``: an
isolated Airflow home under the stack's home, SQLite metadata). No ``/score`` requests are
sent; the retrain is rolled back at the end, so the registry is left as it was found
(champion unchanged, no challenger) for the other files sharing the stack.
"""

from __future__ import annotations

import time

import httpx
import pytest

from pipelines.registry import CHALLENGER, CHAMPION, resolve_alias

pytestmark = [pytest.mark.integration, pytest.mark.slow]


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
    for task_id in ("validate_data", "train_challenger", "promote", "reload_serving"):
        assert _ended(output, task_id), f"task {task_id} did not run:\n{output[-4000:]}"

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
