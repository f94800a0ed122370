"""The containerised stack, for real: images built here, containers up, requests scored, faults.

On the session's stack (``conftest.py``: its own project, free loopback ports, the small world,
built and brought up through the functions `make images` and `make up STACK=compose` call):
every service healthy and published on 127.0.0.1 only; the candidate's workstation reads each
service by its own health (a stopped simulator as stopped) and keeps its tools in a login shell;
no scenario material or state in the images; scored requests land in the prediction log; a DAG
runs on Airflow's scheduler, triggered through its REST API; and the fault drills — Redis down
(serving falls back at once, says so, and recovers without a restart), MLflow down (serving
keeps the loaded champion), serving restarted (no record written before the stop is lost, and
the stop is clean).

Skipped, with the reason, when no Docker engine or compose command answers. With the images
cached, the whole compose session (these and tests/compose/test_compose_lab.py) took 11 minutes
on a 2-core machine (a cold build adds ~15-25 minutes).
"""

from __future__ import annotations

import re
import time

import httpx
import pytest

from control import compose
from tests.compose.conftest import Stack

pytestmark = [pytest.mark.compose, pytest.mark.slow]

N_REQUESTS = 20


def test_every_service_healthy_and_published_on_loopback_only(stack: Stack) -> None:
    assert compose.status(stack.settings) == 0
    published = []
    for service in stack.compose.services():
        info = stack.compose.container(service)
        assert info is not None, f"{service} has no container"
        for bindings in (info["NetworkSettings"].get("Ports") or {}).values():
            for binding in bindings or []:
                published.append((service, binding["HostIp"]))
    assert {service for service, _ in published} >= {"mlflow", "serving", "airflow-apiserver"}
    assert all(host == "127.0.0.1" for _, host in published), published


def workstation_status(stack: Stack) -> tuple[int, str]:
    """`fraudlab status` in the candidate's shell."""
    done = stack.compose.exec("workstation", ["fraudlab", "status"], capture=True)
    return done.returncode, done.stdout + done.stderr


def test_the_workstation_reads_each_service_by_its_own_health(stack: Stack) -> None:
    """No pid of another container to find: a healthy stack reads healthy, a stopped
    simulator reads stopped at once (its progress file says so), and healthy again after."""
    code, printed = workstation_status(stack)
    assert code == 0, printed
    assert "stopped" not in printed and "not all components are healthy" not in printed, printed
    assert printed.strip().splitlines()[-1] == "all components are healthy", printed
    for service in ("postgres", "redis", "mlflow", "serving", "traffic", "airflow-scheduler"):
        assert service in printed

    stack.compose.stop("traffic")
    try:
        code, printed = workstation_status(stack)
        assert code == 1, printed
        traffic = next(line for line in printed.splitlines() if re.match(r"\W*traffic\b", line))
        assert "stopped" in traffic, printed
        assert "not all components are healthy" in printed.strip().splitlines()[-1], printed
    finally:
        stack.compose.start("traffic")
    stack.wait_healthy("traffic")
    code, printed = workstation_status(stack)
    assert code == 0, printed


def test_a_login_shell_in_the_workstation_keeps_the_project_environment(stack: Stack) -> None:
    """/etc/profile resets PATH: the CLI and the clients must survive it."""
    done = stack.compose.exec(
        "workstation",
        ["bash", "-lc", "fraudlab --help && command -v mlflow feast airflow"],
        capture=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Usage" in done.stdout and done.stdout.count("/opt/venv/bin/") == 3, done.stdout


def test_images_hold_no_scenarios_notes_or_state(stack: Stack) -> None:
    listing = stack.compose.exec(
        "workstation",
        ["sh", "-c", "cd /app && find . -maxdepth 3 | sort"],
        capture=True,
    ).stdout.split()
    assert "./fraudlab/cli.py" in listing  # the code is there …
    for forbidden in ("./broken_scenarios", "./var", "./.git", "./.env", "./tests/scenarios"):
        assert forbidden not in listing  # … the interviewer's material and any state are not
    assert not [path for path in listing if "INTERVIEWER" in path]


def test_scored_requests_land_in_the_prediction_log(stack: Stack) -> None:
    bodies = stack.payloads(N_REQUESTS, "score")
    for body in bodies:
        response = stack.score(body)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["transaction_id"] == body["transaction_id"]
        assert answer["decision"] in ("approve", "decline")
        assert answer["fallback"] is False, answer  # Redis answers: stored features were used
    ids = [body["transaction_id"] for body in bodies]
    deadline = time.monotonic() + 30
    while stack.logged(ids) != set(ids) and time.monotonic() < deadline:
        time.sleep(1.0)
    assert stack.logged(ids) == set(ids)


def test_a_dag_runs_on_the_scheduler_through_the_rest_api(stack: Stack) -> None:
    assert compose.run_dag(stack.settings, "fraudlab_materialize", timeout_s=900) == 0


def test_redis_down_serving_falls_back_at_once_and_recovers_without_restart(stack: Stack) -> None:
    serving_started = stack.started_at("serving")
    stack.compose.stop("redis")
    try:
        for body in stack.payloads(5, "redis-down"):
            started = time.perf_counter()
            response = stack.score(body)
            elapsed = time.perf_counter() - started
            assert response.status_code == 200, response.text
            assert response.json()["fallback"] is True
            assert response.json()["fallback_reason"], response.json()
            assert elapsed < 3.0, f"a request took {elapsed:.1f}s while Redis was down"
    finally:
        stack.compose.start("redis")
    stack.wait_healthy("redis")
    deadline = time.monotonic() + 60
    answer: dict = {}
    while time.monotonic() < deadline:
        answer = stack.score(stack.payloads(1, "redis-back")[0]).json()
        if answer.get("fallback") is False:
            break
        time.sleep(1.0)
    assert answer.get("fallback") is False, (
        f"serving still falls back after Redis is back: {answer}"
    )
    assert stack.started_at("serving") == serving_started  # recovered without a restart


def test_mlflow_down_serving_keeps_the_loaded_champion(stack: Stack) -> None:
    before = stack.score(stack.payloads(1, "mlflow-up")[0]).json()["model_version"]
    stack.compose.stop("mlflow")
    try:
        for body in stack.payloads(5, "mlflow-down"):
            response = stack.score(body)
            assert response.status_code == 200, response.text
            assert response.json()["model_version"] == before
        assert httpx.get(f"{stack.url}/readyz", timeout=5).status_code == 200
    finally:
        stack.compose.start("mlflow")
    stack.wait_healthy("mlflow")


def test_serving_restart_loses_no_logged_record(stack: Stack) -> None:
    bodies = stack.payloads(N_REQUESTS, "restart")
    with httpx.Client(timeout=10) as client:
        for body in bodies:
            assert client.post(f"{stack.url}/score", json=body).status_code == 200
    # At once: records still queued for the log writer must be written on the way down.
    stack.compose.run(["stop", "-t", "30", "serving"], capture=True)
    status, _, code = stack.compose.state("serving")
    assert status == "exited" and code != 137, f"serving was killed, not stopped ({code})"
    stack.compose.start("serving")
    stack.wait_healthy("serving")
    ids = [body["transaction_id"] for body in bodies]
    assert stack.logged(ids) == set(ids)
