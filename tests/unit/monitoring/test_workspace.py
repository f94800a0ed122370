"""The Evidently workspace: runs land in one project, the dashboard is created once, and its
panels chart what the runs hold (computed the way `evidently ui` computes them)."""

from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import pytest

from foundation.settings import Settings
from monitoring import sources, workspace

FEATURES = ["amount_log", "velocity_1h"]
COLUMNS = [*FEATURES, "score"]


def psi_snapshot(shift: float):
    """A real Evidently PSI report over synthetic data (``amount_log`` shifted by ``shift``)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    rng = np.random.default_rng(3)
    reference = pd.DataFrame({c: rng.normal(0.0, 1.0, 2000) for c in COLUMNS})
    current = pd.DataFrame({c: rng.normal(0.0, 1.0, 1000) for c in COLUMNS})
    current["amount_log"] += shift
    definition = DataDefinition(numerical_columns=COLUMNS)
    report = Report([ValueDrift(column=c, method="psi", threshold=0.2) for c in COLUMNS])
    return report.run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )


def psi_values(snapshot) -> dict[str, float]:
    return {m["config"]["column"]: m["value"] for m in snapshot.dict()["metrics"]}


def add(settings: Settings, snapshot, checks: dict[str, str], run: str) -> str:
    return workspace.add_snapshot(
        settings,
        snapshot,
        monitor="drift",
        name=f"drift {run}",
        checks=checks,
        check_noun="columns",
        metadata={"model_version": "7"},
        panels=workspace.drift_panels(FEATURES),
    )


def store_of(settings: Settings):
    from evidently.ui.storage.local.base import LocalState

    return LocalState(str(sources.workspace_dir(settings)))


def charted(settings: Settings) -> dict[str, list]:
    """Each panel's series as `evidently ui` serves them: {panel title: [(params, values)]}."""
    from evidently.ui.service.base import SeriesFilter
    from evidently.ui.service.storage.local.base import InMemoryDataStorage

    store = store_of(settings)
    [project] = store.list_projects()
    data = InMemoryDataStorage(str(sources.workspace_dir(settings)))
    result = {}
    for panel in store.read_dashboard(project).panels:
        filters = [
            SeriesFilter(
                tags=v.tags, metadata=v.metadata, metric=v.metric, metric_labels=v.metric_labels
            )
            for v in panel.values
        ]
        response = asyncio.run(data.get_data_series(project, filters, None, None))
        result[panel.title] = [(s.params, s.values) for s in response.series]
    return result


@pytest.fixture(scope="module")
def snapshots():
    return psi_snapshot(0.0), psi_snapshot(1.0)


def test_two_runs_share_one_project_and_one_set_of_panels(tmp_path, snapshots) -> None:
    settings = Settings(_env_file=None, home=tmp_path)
    calm, shifted = snapshots
    first = add(settings, calm, dict.fromkeys(COLUMNS, "ok"), "1")
    second = add(
        settings, shifted, {"amount_log": "alert", "velocity_1h": "ok", "score": "ok"}, "2"
    )

    store = store_of(settings)
    [project] = store.list_projects()
    assert store.read_project(project).name == workspace.PROJECT
    assert sorted(map(str, store.list_snapshots(project))) == sorted([first, second])
    stored = store.read_snapshot(project, second)
    assert stored.name == "drift 2"
    assert stored.tags == ["drift"]
    assert stored.metadata == {"monitor": "drift", "model_version": "7"}
    dashboard = store.read_dashboard(project)
    assert [tab.title for tab in dashboard.tabs] == ["status", "drift"]
    titles = [p.title for p in dashboard.panels]
    assert titles == [
        "drift: columns by verdict, per run",
        "drift: columns at alert / warn (latest run)",
        "PSI of the score",
        "PSI per model input",
    ]
    assert dashboard.tabs[0].panels == [dashboard.panels[0].id]
    assert dashboard.tabs[1].panels == [p.id for p in dashboard.panels]
    # the caller's snapshot is left as it was: no tag, no check counts
    assert calm.to_snapshot_model().tags == []
    assert len(calm.dict()["metrics"]) == len(COLUMNS)


def test_panels_chart_each_run_in_order(tmp_path, snapshots) -> None:
    settings = Settings(_env_file=None, home=tmp_path)
    calm, shifted = snapshots
    add(settings, calm, dict.fromkeys(COLUMNS, "ok"), "1")
    add(settings, shifted, {"amount_log": "alert", "velocity_1h": "warn", "score": "ok"}, "2")

    charts = charted(settings)

    def by(title: str, label: str) -> dict[str, list]:
        return {params[label]: values for params, values in charts[title]}

    verdicts = by("drift: columns by verdict, per run", "categories")
    assert verdicts == {"['alert']": [0.0, 1.0], "['warn']": [0.0, 1.0], "['ok']": [3.0, 1.0]}
    latest = by("drift: columns at alert / warn (latest run)", "categories")
    assert set(latest) == {"['alert']", "['warn']"}
    inputs = by("PSI per model input", "column")
    assert set(inputs) == set(FEATURES)  # the score has a panel of its own
    for column in FEATURES:
        expected = [psi_values(calm)[column], psi_values(shifted)[column]]
        assert inputs[column] == pytest.approx(expected)
    assert inputs["amount_log"][1] > 0.2 > inputs["amount_log"][0]
    score = by("PSI of the score", "column")
    assert score == {
        "score": pytest.approx([psi_values(calm)["score"], psi_values(shifted)["score"]])
    }


def test_a_changed_panel_is_replaced_in_place_and_other_tabs_are_kept(tmp_path, snapshots) -> None:
    settings = Settings(_env_file=None, home=tmp_path)
    calm, _ = snapshots
    add(settings, calm, dict.fromkeys(COLUMNS, "ok"), "1")
    workspace.add_snapshot(
        settings,
        calm,
        monitor="freshness",
        name="freshness 1",
        panels=[workspace.line_panel("Feature age", [workspace.series("MaxValue", column="age")])],
    )
    store = store_of(settings)
    [project] = store.list_projects()
    before = store.read_dashboard(project)
    inputs_id = next(p.id for p in before.panels if p.title == "PSI per model input")

    # the champion gained an input: the same panel now has one series more
    workspace.add_snapshot(
        settings,
        calm,
        monitor="drift",
        name="drift 2",
        panels=workspace.drift_panels([*FEATURES, "hour_sin"]),
    )

    after = store.read_dashboard(project)
    assert [t.title for t in after.tabs] == ["status", "drift", "freshness"]
    assert len(after.panels) == len(before.panels)
    replaced = next(p for p in after.panels if p.title == "PSI per model input")
    assert replaced.id == inputs_id
    assert [v.legend for v in replaced.values] == [*FEATURES, "hour_sin"]
    assert all(v.tags == ["drift"] for v in replaced.values)
    freshness = next(p for p in after.panels if p.title == "Feature age")
    assert freshness.values[0].tags == ["freshness"]
    # titles not passed this time (the check panels) stay where they were
    assert [p.title for p in after.panels][:2] == [p.title for p in before.panels][:2]


def test_verdicts_outside_ok_warn_alert_are_refused_before_anything_is_written(
    tmp_path, snapshots
) -> None:
    settings = Settings(_env_file=None, home=tmp_path)
    with pytest.raises(ValueError, match="insufficient_data"):
        workspace.add_snapshot(
            settings,
            snapshots[0],
            monitor="drift",
            name="drift 1",
            checks={"amount_log": "insufficient_data"},
        )
    assert not sources.workspace_dir(settings).exists()


def test_the_workspace_keeps_only_the_newest_runs(tmp_path, snapshots) -> None:
    settings = Settings(_env_file=None, home=tmp_path, workspace_keep_runs=3)
    ids = [add(settings, snapshots[i % 2], {"amount_log": "ok"}, f"r{i}") for i in range(5)]
    directory = sources.workspace_dir(settings)
    (project,) = [p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")]
    kept = sorted(p.stem for p in (project / "snapshots").glob("*.json"))
    assert kept == sorted(ids[-3:])


def test_the_dashboard_leads_with_each_monitors_status_then_the_details(
    tmp_path, snapshots
) -> None:
    """The UI draws the panels on one page in stored order (no tabs): skew ran first and drift
    was 3,000 px down. Each monitor's status over time comes first, in `MONITORS` order, then
    each monitor's details in the same order, whichever monitor ran first."""
    settings = Settings(_env_file=None, home=tmp_path)
    calm, _ = snapshots

    def run(monitor: str, noun: str, detail: str) -> None:
        workspace.add_snapshot(
            settings,
            calm,
            monitor=monitor,
            name=f"{monitor} 1",
            checks={"x": "ok", "y": "warn"},
            check_noun=noun,
            panels=[workspace.line_panel(detail, [workspace.series("MeanValue", column="x")])],
        )

    run("skew", "features", "skew detail")
    run("freshness", "feature views", "freshness detail")
    add(settings, calm, dict.fromkeys(COLUMNS, "ok"), "1")
    run("skew", "features", "skew detail")  # a second run moves nothing
    run("ui-check", "checks", "ui-check detail")  # a monitor not in MONITORS comes last

    store = store_of(settings)
    [project] = store.list_projects()
    dashboard = store.read_dashboard(project)
    assert [p.title for p in dashboard.panels] == [
        "drift: columns by verdict, per run",
        "skew: features by verdict, per run",
        "freshness: feature views by verdict, per run",
        "ui-check: checks by verdict, per run",
        "drift: columns at alert / warn (latest run)",
        "PSI of the score",
        "PSI per model input",
        "skew: features at alert / warn (latest run)",
        "skew detail",
        "freshness: feature views at alert / warn (latest run)",
        "freshness detail",
        "ui-check: checks at alert / warn (latest run)",
        "ui-check detail",
    ]
    assert [t.title for t in dashboard.tabs] == [
        "status",
        "drift",
        "skew",
        "freshness",
        "ui-check",
    ]
    assert len(dashboard.tabs[0].panels) == 4
    # every stored panel is drawn once and belongs to its monitor's tab
    assert len({p.id for p in dashboard.panels}) == len(dashboard.panels)
    monitor_tabs = [pid for t in dashboard.tabs[1:] for pid in t.panels]
    assert sorted(map(str, monitor_tabs)) == sorted(str(p.id) for p in dashboard.panels)


def test_the_dashboard_order_names_every_monitor_the_cli_runs() -> None:
    from monitoring.run import Monitor

    assert list(workspace.MONITORS) == [m.value for m in Monitor if m is not Monitor.all]
