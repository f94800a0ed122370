"""``fraudlab status`` inside the containerised stack (the candidate's workstation): every
service judged by its own health, the traffic simulator by its progress file — never by a pid,
which a container of the stack never has for another service."""

from __future__ import annotations

import time

import pytest

from control import services
from tests.conftest import small_settings
from traffic import progress


@pytest.fixture
def inside(tmp_path, monkeypatch):
    """Settings as docker-compose.yml gives the workstation, every service answering."""
    settings = small_settings(
        tmp_path / "home",
        stack="compose",
        in_container=True,
        mlflow_tracking_uri="http://mlflow:5050",
        serving_url="http://serving:3000",
        evidently_url="http://monitoring:8085",
        feast_registry_url="postgresql+psycopg://feast:secret@postgres:5432/feast",
        feast_redis="redis:6379,password=secret",
    )
    settings.data_dir.mkdir(parents=True)
    beat = "2026-01-01T10:00:00+00:00"
    monkeypatch.setattr(services, "postgres_answers", lambda url: (True, "answers"))
    monkeypatch.setattr(services, "redis_answers", lambda connection: (True, "PONG"))
    monkeypatch.setattr(services, "mlflow_healthy", lambda s: True)
    monkeypatch.setattr(services, "serving_ready", lambda s: True)
    monkeypatch.setattr(services, "served_model_version", lambda s: "3")
    monkeypatch.setattr(services, "evidently_healthy", lambda s: True)
    monkeypatch.setattr(
        services,
        "airflow_health",
        lambda settings, url: {
            "metadatabase": {"status": "healthy"},
            "scheduler": {"status": "healthy", "latest_scheduler_heartbeat": beat},
            "dag_processor": {"status": "healthy", "latest_dag_processor_heartbeat": beat},
        },
    )
    return settings


def sending(**fields) -> dict:
    return {
        "clock": "2025-03-02T10:00:00",
        "sent_total": 40,
        "errors_total": 0,
        "updated_at": time.time(),
        "finished": False,
        "last_error": None,
        **fields,
    }


def test_a_healthy_stack_reads_healthy_with_no_pid_anywhere(inside, capsys) -> None:
    progress.write_state(inside, sending())
    assert not inside.run_dir.exists()  # no pid file: nothing of the embedded stack's
    assert services.status(inside) == 0
    printed = capsys.readouterr().out
    assert "stopped" not in printed and "not all components" not in printed, printed
    assert printed.strip().splitlines()[-1] == "all components are healthy"
    rows = {row.service: row for row in services.rows(inside)}
    assert list(rows) == [
        "postgres",
        "redis",
        "mlflow",
        "serving",
        "traffic",
        "monitoring",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
    ]
    assert "secret" not in rows["postgres"].address + rows["redis"].address


def test_a_stopped_simulator_reads_stopped(inside, capsys) -> None:
    progress.write_state(inside, sending())
    progress.mark_stopped(inside)  # what the simulator writes on its way out
    assert services.status(inside) == 1
    printed = capsys.readouterr().out
    traffic = next(row for row in services.rows(inside) if row.service == "traffic")
    assert (traffic.health, traffic.healthy) == ("stopped", False)
    assert printed.strip().splitlines()[-1].startswith("not all components are healthy")


def test_a_silent_scheduler_or_a_missing_progress_file_is_not_healthy(inside, monkeypatch) -> None:
    rows = {row.service: row for row in services.rows(inside)}
    assert rows["traffic"].health == progress.NOT_STARTED and not rows["traffic"].healthy
    progress.write_state(inside, sending())
    monkeypatch.setattr(
        services,
        "airflow_health",
        lambda settings, url: {
            "metadatabase": {"status": "healthy"},
            "scheduler": {"status": "unhealthy", "latest_scheduler_heartbeat": None},
            "dag_processor": {"status": "healthy"},
        },
    )
    rows = {row.service: row for row in services.rows(inside)}
    assert rows["traffic"].healthy and not rows["airflow-scheduler"].healthy
    assert rows["airflow-apiserver"].healthy and rows["airflow-dag-processor"].healthy
    monkeypatch.setattr(services, "airflow_health", lambda settings, url: None)
    assert not any(row.healthy for row in services.rows(inside) if "airflow" in row.service)


def test_the_redis_connection_string_is_read_as_feast_reads_it(monkeypatch) -> None:
    seen = {}

    class Redis:
        def __init__(self, **kwargs) -> None:
            seen.update(kwargs)

        def ping(self) -> bool:
            return True

        def close(self) -> None:
            pass

    import redis

    monkeypatch.setattr(redis, "Redis", Redis)
    ok, _ = services.redis_answers("redis:6380,password=p=w,ssl=false")
    assert ok and (seen["host"], seen["port"], seen["password"]) == ("redis", 6380, "p=w")


def test_the_workstation_status_command_reads_the_services_not_pid_files(
    inside, monkeypatch
) -> None:
    """`fraudlab status` in a container of the stack: the embedded process table would call a
    healthy simulator, which runs in a container of its own, stopped."""
    from typer.testing import CliRunner

    from fraudlab import cli

    progress.write_state(inside, sending())
    monkeypatch.setattr(cli, "get_settings", lambda: inside)
    result = CliRunner().invoke(cli.app, ["status"])
    assert result.exit_code == 0, result.output
    assert "stopped" not in result.output and "airflow-scheduler" in result.output
