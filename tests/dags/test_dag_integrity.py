"""Every DAG in ``dags/`` imports cleanly, says what it does, retries, and does no I/O at import.

Airflow reads its configuration when it is first imported (and writes ``airflow.cfg`` into
``AIRFLOW_HOME``), so each check runs in a child process with the isolated environment of
``control.airflow``, never in the test process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from control.airflow import DAG_IDS, DAGS_FOLDER, airflow_environment
from tests.conftest import small_settings

DAG_FILES = sorted(p for p in DAGS_FOLDER.glob("*.py") if p.name != "__init__.py")
# What a DAG file must not pull in when the DAG processor parses it (every ~30 s in compose):
# these are the libraries its tasks use, seconds of import and the first step towards I/O.
HEAVY_MODULES = (
    "feast",
    "mlflow",
    "lightgbm",
    "onnxruntime",
    "evidently",
    "great_expectations",
    "pandas",
    "httpx",
    "features",
    "pipelines",
    "monitoring",
    "serving",
)

DAGBAG_SCRIPT = """
import json, sys
from airflow.models import DagBag
bag = DagBag(dag_folder=sys.argv[1])
print("@@" + json.dumps({
    "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
    "dags": {
        dag.dag_id: {
            "tags": sorted(dag.tags),
            "doc_md": dag.doc_md or "",
            "default_retries": dag.default_args.get("retries", 0),
            "task_retries": {t.task_id: t.retries for t in dag.tasks},
            "catchup": dag.catchup,
            "fileloc": dag.fileloc,
        }
        for dag in bag.dags.values()
    },
}))
"""

# Airflow itself is imported first: what counts is what the DAG file adds on top of it.
IMPORT_SCRIPT = """
import importlib.util, json, sys
import airflow.sdk, airflow.providers.standard.operators.trigger_dagrun
from airflow.sdk import dag, task
before = set(sys.modules)
spec = importlib.util.spec_from_file_location("dag_under_test", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print("@@" + json.dumps(sorted(set(sys.modules) - before)))
"""


def _child(script: str, arg: str, home: Path) -> object:
    env = airflow_environment(small_settings(home))
    done = subprocess.run(
        [sys.executable, "-c", script, arg],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("@@"))
    return json.loads(line[2:])


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory) -> dict:
    return _child(DAGBAG_SCRIPT, str(DAGS_FOLDER), tmp_path_factory.mktemp("dagbag"))


def test_every_dag_file_imports_without_errors(dagbag):
    assert dagbag["import_errors"] == {}
    assert set(dagbag["dags"]) == set(DAG_IDS)
    # one DAG per file, named like its file: `make retrain` finds fraudlab_retrain.py
    for dag_id, dag in dagbag["dags"].items():
        assert Path(dag["fileloc"]).stem == dag_id


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_dag_is_documented_tagged_and_retried(dagbag, dag_id):
    dag = dagbag["dags"][dag_id]
    assert "fraudlab" in dag["tags"] and len(dag["tags"]) >= 2
    assert dag["doc_md"].startswith(f"# {dag_id}\n")
    assert dag["default_retries"] >= 1
    assert dag["catchup"] is False
    # a task may opt out of retries only where a retry cannot change the outcome (gates)
    assert sum(r >= 1 for r in dag["task_retries"].values()) >= len(dag["task_retries"]) - 1


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=[f.stem for f in DAG_FILES])
def test_importing_a_dag_file_does_no_io(dag_file, tmp_path):
    home = tmp_path / "fraudlab-home"
    imported = _child(IMPORT_SCRIPT, str(dag_file), home)
    heavy = sorted({m for m in imported if m.split(".")[0] in HEAVY_MODULES})
    assert heavy == [], f"{dag_file.name} imports {heavy} at module level: import inside tasks"
    # the fraudlab home holds only Airflow's own files (airflow.cfg): no data, store or log
    assert [p.name for p in home.iterdir()] == ["airflow"]
