"""Airflow's processes in the stack: a heartbeat vouches only for the process we are running."""

from __future__ import annotations

from datetime import UTC, datetime

from control import stack
from tests.conftest import small_settings


def health(beat: datetime, status: str = "healthy") -> dict:
    """The shape of the API server's GET /api/v2/monitor/health."""
    return {
        "metadatabase": {"status": "healthy"},
        "scheduler": {"status": status, "latest_scheduler_heartbeat": beat.isoformat()},
    }


def test_a_heartbeat_counts_only_from_the_scheduler_we_run(tmp_path) -> None:
    settings = small_settings(tmp_path / "home")
    settings.run_dir.mkdir(parents=True)
    settings.log_dir.mkdir(parents=True)
    record = stack._spawn(settings, "airflow-scheduler", ["sleep", "60"], "http://127.0.0.1:1")
    predecessor = datetime.fromtimestamp(record.started_at - 5, UTC)  # crashed 5 s before
    ours = datetime.fromtimestamp(record.started_at + 1, UTC)
    try:
        assert stack.running(settings, "airflow-scheduler") is not None
        assert not stack.airflow_healthy(settings, "airflow-scheduler", health(predecessor))
        assert stack.airflow_healthy(settings, "airflow-scheduler", health(ours))
        assert not stack.airflow_healthy(settings, "airflow-scheduler", health(ours, "unhealthy"))
        # the API server's row only needs the API (and its metadata DB) to answer
        assert stack.airflow_healthy(settings, "airflow-api-server", health(predecessor))
    finally:
        assert "stopped" in (stack._stop(settings, "airflow-scheduler") or "")
    # a fresh heartbeat does not bring a process back: it could be anyone's
    assert not stack.airflow_healthy(settings, "airflow-scheduler", health(ours))


def test_airflow_stops_first_and_its_api_server_last_of_its_processes() -> None:
    order = list(reversed(stack.COMPONENTS))
    airflow = [order.index(name) for name in stack.AIRFLOW_COMPONENTS]
    # tasks the scheduler runs call MLflow and serving, and report their end to the API server
    assert max(airflow) < order.index("traffic") < order.index("serving")
    assert order[max(airflow)] == "airflow-api-server"
