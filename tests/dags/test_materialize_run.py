"""A real ``airflow dags test fraudlab_materialize`` on a small world in an isolated home.

The DAG is run the way ``make materialize`` runs it (``control.airflow.run_dag``: SQLite
metadata created by ``airflow db migrate``, every task in the foreground, no servers), and
the online store must then answer for the world's users.
"""

from __future__ import annotations

import sqlite3
import time

import pytest

from control.airflow import airflow_home, run_dag
from pipelines import tasks
from tests.conftest import small_settings

pytestmark = pytest.mark.slow


def test_materialize_dag_fills_the_online_store(tmp_path, capfd):
    settings = small_settings(tmp_path / "home")
    tasks.prepare_data(settings)
    assert not settings.feast_online_path.exists()

    started = time.perf_counter()
    code = run_dag(settings, "fraudlab_materialize")
    seconds = time.perf_counter() - started
    out, err = capfd.readouterr()
    print(f"db migrate + airflow dags test fraudlab_materialize: {seconds:.1f}s")

    assert code == 0, (out + err)[-5000:]
    assert (airflow_home(settings) / "airflow.db").exists()
    for task_id in ("apply_definitions", "materialize_online_store"):
        assert f"[DAG TEST] end task task_id={task_id}" in out + err
    assert "state=success" in out + err
    with sqlite3.connect(settings.feast_online_path) as db:
        tables = [r[0] for r in db.execute("select name from sqlite_master where type='table'")]
        rows = sum(db.execute(f'select count(*) from "{t}"').fetchone()[0] for t in tables)
    assert rows > 0, f"online store is empty after the DAG run (tables: {tables})"
