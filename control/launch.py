"""How the control plane launches a process of the stack, and asks whether serving is up.

Owns: the environment every child process gets (the launch environment plus the settings),
how serving is started (its supervisor, the same command embedded and in serving's container)
and how a worker runs a release, and the health probes of MLflow and serving. ``control.stack`` (the embedded stack) and
``control.serve`` (serving's release supervisor) both build on this; neither imports the other.
Must not: start or stop anything itself.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import httpx

from control import releases
from foundation.settings import REPO_ROOT, Settings

# The environment as the user launched us, taken before bootstrap imports Feast and MLflow:
# Feast points PROMETHEUS_MULTIPROC_DIR at a temporary directory it deletes when this process
# exits, and a child inheriting it fails to import Feast (or to count metrics) later.
_LAUNCH_ENVIRONMENT = dict(os.environ)


def child_environment(settings: Settings) -> dict[str, str]:
    """The launch environment plus the settings (``Settings.environment``), so children see the
    same configuration even when it came from a ``.env`` file in another working directory."""
    env = dict(_LAUNCH_ENVIRONMENT)
    multiproc = env.get("PROMETHEUS_MULTIPROC_DIR")
    if multiproc and not Path(multiproc).is_dir():
        del env["PROMETHEUS_MULTIPROC_DIR"]
    env.update(settings.environment())
    env["PYTHONUNBUFFERED"] = "1"  # logs appear while the process runs, not at exit
    return env


def tool(name: str) -> list[str]:
    """A console script from this interpreter's environment (the project's .venv)."""
    script = Path(sys.executable).parent / name
    return [str(script)] if script.exists() else [sys.executable, "-m", name]


def http_get(url: str, timeout: float = 2.0) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=timeout)
    except httpx.HTTPError:
        return None


def mlflow_healthy(settings: Settings) -> bool:
    response = http_get(f"{settings.tracking_uri}/health")
    return response is not None and response.status_code == 200


def serving_ready(settings: Settings) -> bool:
    response = http_get(f"{settings.serving_base_url}/readyz")
    return response is not None and response.status_code == 200


SERVICE = "serving.service:FraudScorer"
# BentoML's HTTP worker: what `bentoml serve`'s arbiter runs on the socket it binds. Serving's
# supervisor (control.serve) binds the socket itself and runs this on it (why: its docstring).
BENTOML_WORKER = "_bentoml_impl.worker.service"


def supervisor_command() -> list[str]:
    """How serving is started, embedded and in its container: ``fraudlab serve``, which holds
    serving's port and runs the deployed release's worker on it (``control.serve``)."""
    return [sys.executable, "-m", "fraudlab.cli", "serve"]


def serving_command(
    release: releases.Release | None,
    fd: int,
    worker: int = 1,
    pythonpath: str | None = None,
) -> tuple[list[str], dict[str, str], Path]:
    """How a serving worker runs ``release`` (None: the code this process runs) on the
    listening socket ``fd``: the command, the variables it needs on top of the stack's
    environment (the settings reach it there, as every process), and its working directory.
    ``worker`` numbers it in serving's log lines."""
    command = [
        sys.executable,
        "-m",
        BENTOML_WORKER,
        SERVICE,
        "--fd",
        str(fd),
        "--worker-id",
        str(worker),
        "--backlog",
        "2048",
    ]
    # The release's packages come first on the path: serving imports what was deployed, not
    # the working tree the project is installed from (``pythonpath``: what else it may import).
    path = os.pathsep.join(p for p in (str(release.path), pythonpath) if p) if release else ""
    release_env = {"PYTHONPATH": path, "FRAUDLAB_RELEASE_ID": release.id} if release else {}
    return command, release_env, release.path if release else REPO_ROOT
