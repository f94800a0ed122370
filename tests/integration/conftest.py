"""The embedded stack, brought up for real in an isolated home on free loopback ports.

The stack under test is started with the same `fraudlab up` a user runs (without the traffic
simulator, so the prediction log holds exactly what the tests send) and stopped at the end.
When a test fails, the stack's logs are printed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field

import httpx
import pytest

from foundation.settings import Settings
from tests.conftest import free_port, small_settings

UP_TIMEOUT_S = 900
PRODUCTION_TRAFFIC = "production_traffic"


def pytest_collection_modifyitems(config, items) -> None:
    """Tests that replay production-like traffic through the simulator run after all others.

    They advance the clock, push velocity state and fill the log with days of requests, which
    the other files sharing the stack do not expect (exact log contents, in-order parity). The
    order among them is their file and definition order.
    """
    items.sort(key=lambda item: item.get_closest_marker(PRODUCTION_TRAFFIC) is not None)


@dataclass
class Stack:
    settings: Settings
    env: dict[str, str]
    scored_ids: list[str] = field(default_factory=list)  # transaction ids answered with 200

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "fraudlab.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    @property
    def url(self) -> str:
        return self.settings.serving_base_url

    def score(self, payload: dict | str, timeout: float = 10.0) -> httpx.Response:
        if isinstance(payload, str):
            response = httpx.post(
                f"{self.url}/score",
                content=payload,
                timeout=timeout,
                headers={"content-type": "application/json"},
            )
        else:
            response = httpx.post(f"{self.url}/score", json=payload, timeout=timeout)
        if response.status_code == 200:
            self.scored_ids.append(response.json()["transaction_id"])
        return response


def _env_for(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDLAB_")}
    for name in (
        "home",
        "n_users",
        "n_merchants",
        "history_days",
        "future_days",
        "fraud_rate",
        "mlflow_port",
        "serving_port",
        "evidently_port",
        "reload_interval_s",
    ):
        env[f"FRAUDLAB_{name.upper()}"] = str(getattr(settings, name))
    return env


@pytest.fixture(scope="session")
def stack(tmp_path_factory, request) -> Stack:
    home = tmp_path_factory.mktemp("fraudlab-stack")
    settings = small_settings(
        home,
        mlflow_port=free_port(),
        serving_port=free_port(),
        evidently_port=free_port(),
        reload_interval_s=2.0,
    )
    handle = Stack(settings, _env_for(settings))
    print(f"\nbringing the embedded stack up in {home} (fraudlab up --no-traffic) …", flush=True)
    up = handle.cli("up", "--no-traffic", timeout=UP_TIMEOUT_S)
    try:
        if up.returncode != 0:
            pytest.fail(
                f"`fraudlab up` failed ({up.returncode}):\n{up.stdout}\n{up.stderr}\n"
                f"{handle.cli('logs', '--lines', '80').stdout}"
            )
        yield handle
    finally:
        if request.session.testsfailed:
            print("\n===== stack logs (a test failed) =====")
            print(handle.cli("logs", "--lines", "60").stdout)
        down = handle.cli("down", timeout=120)
        print(down.stdout, down.stderr)
