"""Materialising says what it did in plain text: no ANSI escape codes when its output is a log
(Feast colours its lines whatever stdout is), and no DeprecationWarning from ibis, the library
under Feast's DuckDB offline store (`make up` printed seven).

Run in a fresh interpreter: Feast's import installs a warnings filter of its own, once per
process, so only a process that imports Feast for the first time shows what a user sees.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import small_settings

pytestmark = pytest.mark.slow

TINY = {"n_users": 300, "n_merchants": 40, "history_days": 35, "future_days": 2}

MATERIALISE = textwrap.dedent(
    """
    import json, sys, warnings
    from features.store import apply_definitions, materialize, open_store
    from foundation.settings import get_settings
    from pipelines import tasks
    from pipelines.data import read_clock

    settings = get_settings()
    tasks.prepare_data(settings)
    store = open_store(settings)
    apply_definitions(store, settings)
    with warnings.catch_warnings(record=True) as caught:
        materialize(store, read_clock(settings).to_pydatetime())
    with open(sys.argv[1], "w") as out:
        json.dump([[w.category.__name__, w.filename, str(w.message)] for w in caught], out)
    """
)


def test_a_materialisation_log_holds_no_escape_codes_and_no_ibis_deprecations(tmp_path) -> None:
    settings = small_settings(tmp_path / "home", **TINY)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDLAB_")}
    env["FRAUDLAB_HOME"] = str(settings.home)
    env |= {f"FRAUDLAB_{k.upper()}": str(getattr(settings, k)) for k in (*TINY, "fraud_rate")}
    caught = tmp_path / "warnings.json"
    done = subprocess.run(
        [sys.executable, "-c", MATERIALISE, str(caught)],
        env=env,
        capture_output=True,  # a log, as the simulator's, an Airflow task's, a CI job's
        text=True,
        timeout=600,
        check=False,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log
    assert "Materializing" in done.stdout and "user_stats" in done.stdout  # Feast's own lines
    assert "\x1b" not in log, log
    ibis = [w for w in json.loads(caught.read_text()) if "/ibis/" in w[1]]
    assert not [w for w in ibis if w[0] == "DeprecationWarning"], ibis
    assert "DeprecationWarning" not in log, log
