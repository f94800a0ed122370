"""Running the DAGs in ``dags/`` with ``airflow dags test``, in an Airflow home of their own.

Owns: the Airflow environment of the embedded stack (``<home>/airflow``: SQLite metadata,
``dags/`` as the DAGs folder, no example DAGs, parallelism 4) and one DAG run in the
foreground. ``airflow dags test`` starts no servers: it parses the DAG file and runs every task
in this machine's processes, so nothing listens on any port.

With no scheduler, a run another DAG triggers (``fraudlab_monitor`` → ``fraudlab_retrain`` on a
drift alert) would wait in the metadata DB forever: ``run_dag`` finds the queued runs the DAG
it just ran created (``conf["triggered_by"]``) and runs each with ``airflow dags test`` at its
logical date and with its conf, which replaces the queued run, then says how it ended.
Must not: know what a DAG does (``dags/`` wires the packages), or touch another Airflow
install: every setting comes from the environment of the child process, never a global config.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from foundation.settings import REPO_ROOT, Settings

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
    env.update(settings.environment())
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


# Runs one Python process inside this Airflow home (its ORM, its SQLite DB): the latest run of a
# DAG, its task states, and the runs it triggered that nothing has executed yet.
RUN_SUMMARY_SCRIPT = """
import json, sys
from sqlalchemy import select
from airflow.models.dagrun import DagRun
from airflow.utils.session import create_session
from airflow.utils.state import DagRunState

def state(value):
    return getattr(value, "value", value)

dag_id = sys.argv[1]
out = {"run": None, "triggered": []}
with create_session() as session:
    latest = session.scalars(
        select(DagRun).where(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).limit(1)
    ).first()
    if latest is not None:
        out["run"] = {
            "run_id": latest.run_id,
            "state": state(latest.state),
            "tasks": {ti.task_id: state(ti.state) for ti in latest.get_task_instances(session=session)},
        }
        origin = f"{dag_id}/{latest.run_id}"
        for run in session.scalars(select(DagRun).where(DagRun.state == DagRunState.QUEUED)):
            if (run.conf or {}).get("triggered_by") == origin:
                out["triggered"].append({
                    "dag_id": run.dag_id,
                    "run_id": run.run_id,
                    "logical_date": run.logical_date.isoformat() if run.logical_date else None,
                    "conf": run.conf or {},
                })
print("@@" + json.dumps(out))
"""
MAX_TRIGGER_DEPTH = 3  # a DAG triggering a DAG triggering a DAG: more would be a loop
FAILED_TASK_STATES = ("failed", "upstream_failed")


def last_run(settings: Settings, dag_id: str, env: Mapping[str, str] | None = None) -> dict:
    """The latest run of ``dag_id`` (id, state, task states) and the queued runs it triggered.

    A run triggered from a task (``TriggerDagRunOperator`` with ``conf["triggered_by"]`` set
    to ``"<dag_id>/<run_id>"``) waits in the metadata DB for a scheduler; under ``dags test``
    there is none, so ``run_dag`` runs it next.
    """
    env = env or airflow_environment(settings)
    done = subprocess.run(
        [sys.executable, "-c", RUN_SUMMARY_SCRIPT, dag_id],
        env=dict(env),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("@@")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"could not read Airflow's metadata DB: {done.stderr[-2000:]}")
    return json.loads(line[2:])


def run_dag(
    settings: Settings,
    dag_id: str,
    conf: str | None = None,
    logical_date: str | None = None,
    _depth: int = 0,
) -> int:
    """Run one DAG once, every task in the foreground (``airflow dags test``), then every run
    it triggered (with their conf, in place of the queued run). Returns the first non-zero
    exit code of the DAG or of a run it triggered, else 0.
    """
    env = airflow_environment(settings)
    code = ensure_database(settings, env)
    if code != 0:
        print(
            f"✗ `airflow db migrate` failed (exit {code}); delete {airflow_home(settings)} and"
            " run the command again",
            file=sys.stderr,
        )
        return code
    args = [
        "dags",
        "test",
        dag_id,
        *([logical_date] if logical_date else []),
        *(["--conf", conf] if conf else []),
    ]
    code = _run(args, env, f"airflow dags test {dag_id}")
    if code != 0:
        print(
            f"✗ DAG {dag_id} failed: the failing task's log is above "
            f"(and under {airflow_home(settings) / 'logs'})",
            file=sys.stderr,
        )
    if _depth >= MAX_TRIGGER_DEPTH:
        return code
    summary = last_run(settings, dag_id, env)
    for child in summary["triggered"]:
        reason = child["conf"].get("reason", "no reason given")
        print(
            f"→ {dag_id} triggered {child['dag_id']} ({reason}; run {child['run_id']}): "
            "running it now",
            file=sys.stderr,
            flush=True,
        )
        # the same logical date replaces the queued run instead of leaving it queued forever
        child_code = run_dag(
            settings, child["dag_id"], json.dumps(child["conf"]), child["logical_date"], _depth + 1
        )
        ran = last_run(settings, child["dag_id"], env)["run"] or {}
        failed = sorted(t for t, s in ran.get("tasks", {}).items() if s in FAILED_TASK_STATES)
        outcome = (
            "succeeded"
            if child_code == 0
            else f"FAILED at {', '.join(failed) or 'a task'} (its log is above)"
        )
        mark = "✓" if child_code == 0 else "✗"
        print(
            f"{mark} {dag_id} triggered {child['dag_id']} ({reason}): run "
            f"{ran.get('run_id', child['run_id'])} {outcome}",
            file=sys.stderr,
            flush=True,
        )
        code = code or child_code
    return code
