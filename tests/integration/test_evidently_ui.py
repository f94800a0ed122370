"""The Evidently UI that `fraudlab up` starts: healthy in status, and a monitor run stored while
it runs is served with its dashboard, without a restart (the UI watches the workspace folder).

The run is stored under a monitor name of its own ("ui-check"), so the drift tab the other
tests fill is left alone.
"""

from __future__ import annotations

import time

import httpx
import numpy as np
import pandas as pd
import pytest

from monitoring import workspace

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MONITOR = "ui-check"
PANEL = "ui-check: PSI of x"


def shifted_psi_snapshot():
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    rng = np.random.default_rng(5)
    reference = pd.DataFrame({"x": rng.normal(0.0, 1.0, 2000)})
    current = pd.DataFrame({"x": rng.normal(1.0, 1.0, 1000)})
    definition = DataDefinition(numerical_columns=["x"])
    return Report([ValueDrift(column="x", method="psi")]).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )


def wait_for_run(base_url: str, run_id: str, timeout_s: float = 30) -> tuple[dict, dict]:
    """The fraudlab project and run ``run_id``, once the UI at ``base_url`` lists the run (it
    watches the workspace folder: a new run shows within seconds, without a restart)."""
    base = f"{base_url}/api"
    project, runs = None, []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        projects = httpx.get(f"{base}/projects", timeout=10).json()
        project = next((p for p in projects if p["name"] == workspace.PROJECT), None)
        if project is not None:
            runs = httpx.get(f"{base}/projects/{project['id']}/snapshots", timeout=10).json()
            if any(r["id"] == run_id for r in runs):
                break
        time.sleep(1)
    assert project is not None, "the UI does not list the fraudlab project"
    listed = [r for r in runs if r["id"] == run_id]
    assert listed, f"the UI did not list run {run_id} within {timeout_s:g} s"
    return project, listed[0]


def test_status_shows_the_evidently_ui_healthy_on_its_own_port(stack) -> None:
    result = stack.cli("status")
    assert result.returncode == 0, result.stdout + result.stderr
    [row] = [line for line in result.stdout.splitlines() if "evidently" in line]
    assert "healthy" in row
    assert stack.settings.evidently_port != 8085  # isolated from a stack on the default port
    version = httpx.get(f"{stack.settings.evidently_base_url}/api/version", timeout=5).json()
    assert version["application"] == "Evidently UI"


def test_a_run_stored_while_the_ui_runs_is_served_with_its_dashboard(stack) -> None:
    base = f"{stack.settings.evidently_base_url}/api"
    run_id = workspace.add_snapshot(
        stack.settings,
        shifted_psi_snapshot(),
        monitor=MONITOR,
        name="ui-check 1",
        checks={"x": "alert"},
        panels=[workspace.line_panel(PANEL, [workspace.series("ValueDrift", column="x")])],
    )

    project, run = wait_for_run(stack.settings.evidently_base_url, run_id)
    assert run["tags"] == [MONITOR]

    dashboard = httpx.get(f"{base}/v2/dashboards/{project['id']}", timeout=10).json()
    [tab] = [t for t in dashboard["tabs"] if t["title"] == MONITOR]
    panels = {p["id"]: p for p in dashboard["panels"]}
    titles = [panels[pid]["title"] for pid in tab["panels"]]
    assert titles == [
        f"{MONITOR}: checks by verdict, per run",
        f"{MONITOR}: checks at alert / warn (latest run)",
        PANEL,
    ]
    [status] = [t for t in dashboard["tabs"] if t["title"] == workspace.STATUS_TAB]
    assert tab["panels"][0] in status["panels"]  # its status leads the dashboard
    for pid in tab["panels"]:
        panel = panels[pid]
        filters = [
            {k: v[k] for k in ("tags", "metadata", "metric", "metric_labels")}
            for v in panel["values"]
        ]
        response = httpx.post(
            f"{base}/v2/snapshots/{project['id']}/data_series_batch",
            json={"series_filter": filters},
            timeout=10,
        )
        assert response.is_success, response.text  # 201: Litestar answers POSTs "created"
        series = response.json()["series"]
        if panel["title"] == PANEL:
            [psi] = series
            assert psi["values"][-1] > 0.2  # x moved by one standard deviation
        else:
            alert = next(s for s in series if s["params"]["categories"] == "['alert']")
            assert alert["values"][-1] == 1.0
