"""The containerised stack the compose tests share: built, brought up once per session, removed.

One stack for every compose-marked test (``tests/compose``): bringing it up (bootstrap trains a
first champion) is most of their time. It runs under a project of its own (unique name, free
loopback ports, an env file in a temporary directory, the small world), through the same
functions `make images` and `make up STACK=compose` call, and is removed at the end of the
session, volumes included; the services' logs are printed when a test failed.

Skipped, with the reason, when no Docker engine or compose command answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from control import compose
from foundation.settings import Settings
from tests.conftest import SMALL_WORLD, free_port

# Project names start with this (override: FRAUDLAB_TEST_COMPOSE_PREFIX) and end with a random
# suffix, so a test run never touches another stack's containers or volumes.
PREFIX = os.environ.get("FRAUDLAB_TEST_COMPOSE_PREFIX", "fraudlab-test")
LAB_PASSPHRASE = "compose lab test passphrase"
# Break/verify/reset seconds of the lab contract runs (test_compose_lab.py), printed at the end.
TIMINGS: dict[str, dict[str, float]] = {}

# Inside a container: request bodies for future transactions (valid users and merchants).
PAYLOADS_SCRIPT = """
import json, sys
import pandas as pd
from foundation.settings import get_settings
from pipelines import data
from traffic.simulator import payload
from pipelines.data import REQUEST_COLUMNS
s = get_settings()
txns = pd.read_parquet(s.data_dir / "transactions.parquet")
future = txns.loc[txns["event_timestamp"] >= data.read_clock(s), list(REQUEST_COLUMNS)]
rows = future.sort_values("event_timestamp").head(int(sys.argv[1]))
print(json.dumps([payload(r) for r in rows.itertuples(index=False, name=None)]))
"""
# Inside a container: which of the given transaction ids the prediction log holds.
LOGGED_SCRIPT = """
import json, sys
from foundation.settings import get_settings
wanted = set(json.loads(sys.argv[1]))
found = set()
for path in get_settings().prediction_log_dir.glob("*.jsonl"):
    for line in path.read_text().splitlines():
        if line.strip():
            txn = json.loads(line).get("transaction_id")
            if txn in wanted:
                found.add(txn)
print(json.dumps(sorted(found)))
"""


class Stack:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.compose = compose.Compose(settings)
        self.url = f"http://127.0.0.1:{settings.serving_port}"
        self._payloads: list[dict] = []

    def python(self, script: str, *args: str, service: str = "workstation") -> str:
        done = self.compose.exec(service, ["python", "-c", script, *args], capture=True)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.strip().splitlines()[-1]

    def payloads(self, n: int, tag: str) -> list[dict]:
        """``n`` valid request bodies with transaction ids unique to this test run."""
        if len(self._payloads) < n:
            self._payloads = json.loads(self.python(PAYLOADS_SCRIPT, str(max(n, 200))))
        run = uuid.uuid4().hex[:6]
        return [
            {**body, "transaction_id": f"compose-{tag}-{run}-{i}"}
            for i, body in enumerate(self._payloads[:n])
        ]

    def score(self, body: dict, timeout: float = 10.0) -> httpx.Response:
        return httpx.post(f"{self.url}/score", json=body, timeout=timeout)

    def logged(self, ids: list[str]) -> set[str]:
        return set(json.loads(self.python(LOGGED_SCRIPT, json.dumps(ids))))

    def wait_healthy(self, service: str, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.compose.state(service)[1] == "healthy":
                return
            time.sleep(2.0)
        raise AssertionError(f"{service} not healthy after {timeout_s:.0f}s")

    def started_at(self, service: str) -> str:
        info = self.compose.container(service)
        assert info is not None
        return info["State"]["StartedAt"]

    def cli_env(self) -> dict[str, str]:
        """The environment `make … STACK=compose` gives the host CLI for this stack."""
        published = {
            f"FRAUDLAB_{name.upper()}": str(getattr(self.settings, name))
            for name in ("mlflow_port", "serving_port", "airflow_port", "evidently_port")
        }
        return {
            **os.environ,
            **published,
            "FRAUDLAB_STACK": "compose",
            "FRAUDLAB_COMPOSE_PROJECT": self.settings.compose_project,
            "FRAUDLAB_COMPOSE_ENV_FILE": str(self.settings.compose_env_file),
            "FRAUDLAB_LAB_PASSPHRASE": LAB_PASSPHRASE,
        }

    def cli(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """``fraudlab <args>`` on the host, as the Makefile runs it (no terminal)."""
        return subprocess.run(
            [sys.executable, "-m", "fraudlab.cli", *args],
            env=self.cli_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def in_lab_runner(self, script: str, *args: str) -> str:
        """``python -c script args`` in a one-off lab runner (no Docker socket); last line."""
        done = self.compose.run(
            ["--profile", "lab", "run", "--rm", "--no-deps", "-T"]
            + ["-e", f"FRAUDLAB_LAB_PASSPHRASE={LAB_PASSPHRASE}", "lab"]
            + ["python", "-c", script, *args],
            capture=True,
        )
        assert done.returncode == 0, (done.stdout or "")[-3000:] + (done.stderr or "")[-3000:]
        return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def stack(tmp_path_factory, request):
    problem = compose.docker_problem()
    if problem is not None:
        pytest.skip(f"containerised stack not tested: {problem}")
    try:
        compose.compose_command()
    except compose.ComposeError as exc:
        pytest.skip(f"containerised stack not tested: {exc}")

    workdir = tmp_path_factory.mktemp("compose")
    env_file = workdir / "env"
    world = {f"FRAUDLAB_{k.upper()}": str(v) for k, v in SMALL_WORLD.items()}
    env_file.write_text(
        "".join(f"{k}={v}\n" for k, v in {**world, "FRAUDLAB_TRAFFIC_RPS": "1"}.items())
    )
    ports = {
        "mlflow_port": free_port(),
        "serving_port": free_port(),
        "airflow_port": free_port(),
        "evidently_port": free_port(),
    }
    settings = Settings(
        _env_file=None,
        stack="compose",
        compose_project=f"{PREFIX}-{uuid.uuid4().hex[:8]}",
        compose_env_file=env_file,
        **ports,
    )
    # Compose interpolates the published ports from the environment (it wins over the file).
    published = {f"FRAUDLAB_{k.upper()}": str(v) for k, v in ports.items()}
    published |= {"POSTGRES_PORT": str(free_port()), "REDIS_PORT": str(free_port())}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in published.items():
            patch.setenv(key, value)
        started = time.monotonic()
        try:
            assert compose.images(settings) == 0, "building the images failed (output above)"
            built = time.monotonic()
            assert compose.up(settings) == 0, "the stack did not come up healthy (output above)"
            print(
                f"\n[compose] images {built - started:.0f}s, up {time.monotonic() - built:.0f}s"
                f" (project {settings.compose_project})"
            )
            yield Stack(settings)
        finally:
            if request.session.testsfailed:
                compose.logs(settings, None, 60)
            compose.down(settings, volumes=True)
            print(f"[compose] total {time.monotonic() - started:.0f}s")


def pytest_terminal_summary(terminalreporter) -> None:
    if not TIMINGS:
        return
    terminalreporter.section("scenario timings on the containerised stack (seconds)")
    for name, times in sorted(TIMINGS.items()):
        cells = ", ".join(f"{verb} {seconds:.1f}" for verb, seconds in times.items())
        terminalreporter.write_line(f"{name}: {cells}")
