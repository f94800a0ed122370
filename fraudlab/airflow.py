"""Running the DAGs in ``dags/`` with ``airflow dags test``, in an Airflow home of their own.

Owns: the Airflow environment of the embedded stack (``<home>/airflow``: SQLite metadata,
``dags/`` as the DAGs folder, no example DAGs, parallelism 4) and one DAG run in the
foreground. ``airflow dags test`` starts no servers: it parses the DAG file and runs every task
in this machine's processes, so nothing listens on any port.
Must not: know what a DAG does (``dags/`` wires the packages), or touch another Airflow
install: every setting comes from the environment of the child process, never a global config.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from fraudlab.settings import REPO_ROOT, Settings

DAGS_FOLDER = REPO_ROOT / "dags"
DAG_IDS = ("fraudlab_materialize", "fraudlab_retrain", "fraudlab_monitor")


def airflow_home(settings: Settings) -> Path:
    """Where this stack's Airflow keeps its config, SQLite metadata DB and task logs."""
    return settings.home.resolve() / "airflow"


def airflow_environment(
    settings: Settings, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The child environment: ``base`` (default: ours, FRAUDLAB_* included) plus Airflow's."""
    home = airflow_home(settings)
    env = dict(os.environ if base is None else base)
    # Tasks build Settings from FRAUDLAB_* variables: whatever this process was given another
    # way (a test's Settings object, a .env file) must reach them the same way.
    for name in sorted(settings.model_fields_set):
        value = getattr(settings, name)
        if value is not None:
            env[f"FRAUDLAB_{name.upper()}"] = str(value)
    env["FRAUDLAB_HOME"] = str(settings.home.resolve())
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            # DAG files import the packages from the repository root
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
            ),
        }
    )
    return env


def _airflow() -> str:
    """The ``airflow`` executable of this interpreter's environment."""
    candidate = Path(sys.executable).parent / "airflow"
    return str(candidate) if candidate.exists() else "airflow"


def _run(args: list[str], env: Mapping[str, str], title: str) -> int:
    print(f"→ {title} …", file=sys.stderr, flush=True)
    started = time.perf_counter()
    # output is inherited, not captured: it streams as the tasks run
    code = subprocess.run([_airflow(), *args], env=dict(env), cwd=REPO_ROOT, check=False)
    seconds = time.perf_counter() - started
    mark = "✓" if code.returncode == 0 else "✗"
    print(f"{mark} {title} ({seconds:.1f}s, exit {code.returncode})", file=sys.stderr, flush=True)
    return code.returncode


def ensure_database(settings: Settings, env: Mapping[str, str] | None = None) -> int:
    """Create the SQLite metadata DB with ``airflow db migrate`` unless it exists."""
    env = env or airflow_environment(settings)
    database = airflow_home(settings) / "airflow.db"
    if database.exists():
        return 0
    airflow_home(settings).mkdir(parents=True, exist_ok=True)
    return _run(["db", "migrate"], env, f"creating Airflow's metadata DB in {database}")


def run_dag(settings: Settings, dag_id: str, conf: str | None = None) -> int:
    """Run one DAG once, every task in the foreground (``airflow dags test``); its exit code."""
    env = airflow_environment(settings)
    code = ensure_database(settings, env)
    if code != 0:
        print(
            f"✗ `airflow db migrate` failed (exit {code}); delete {airflow_home(settings)} and"
            " run the command again",
            file=sys.stderr,
        )
        return code
    args = ["dags", "test", dag_id, *(["--conf", conf] if conf else [])]
    code = _run(args, env, f"airflow dags test {dag_id}")
    if code != 0:
        print(
            f"✗ DAG {dag_id} failed: the failing task's log is above "
            f"(and under {airflow_home(settings) / 'logs'})",
            file=sys.stderr,
        )
    return code
