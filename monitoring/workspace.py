"""The Evidently workspace: every monitor's runs over time, and the dashboard that charts them.

Owns: the local workspace (``<home>/monitoring/workspace``, served by ``evidently ui``), its one
project ("fraudlab"), how a monitor's snapshot is stored there (tagged with the monitor's name,
with the count of its checks per verdict added), and the project's dashboard, kept as code
(panels created once, reset to their definition when it changes, never duplicated by another
run). The dashboard leads with one status-over-time panel per monitor (the "status" tab: how
many of its checks were ok / warn / alert, per run), then each monitor's details (a tab per
monitor), monitors in ``MONITORS`` order. Evidently 0.7's UI draws every panel of the dashboard
on one page, in the order of ``DashboardModel.panels``, and shows no tabs: that order is the
page, so it is kept as the tabs', flattened (``_laid_out``).
Must not: judge anything (the monitors do) or decide what a monitor reports.

Adding your monitor's runs (performance, freshness, latency, ...)
-------------------------------------------------------------------
Build an Evidently ``Snapshot`` the way your monitor judges (``Report([...]).run(...)``), then::

    from monitoring import workspace

    run_id = workspace.add_snapshot(
        settings,
        snapshot,
        monitor="freshness",                        # tag, dashboard tab, panel prefix
        name=f"freshness {run_dir.name}",           # how the run is listed in the UI
        checks={"user_stats": "ok", "user_velocity": "alert"},  # your verdict per check
        check_noun="feature views",                 # what one check is, for panel titles
        metadata={"model_version": bundle.version},
        panels=[
            workspace.line_panel(
                "Feature age (hours)",
                [workspace.series("MaxValue", legend="{{column}}", column="age_hours")],
            ),
        ],
    )

``checks`` (optional) gives your monitor a per-run bar chart of how many checks were ok / warn /
alert (its status panel, at the top of the dashboard) and a "latest run" counter, computed by
Evidently from your verdicts and stored in the same snapshot; a new monitor's name goes into
``MONITORS``, which decides the dashboard's order. ``panels`` are your own charts: each series
names an Evidently metric type (the class name, e.g. ``ValueDrift``) and the metric's
parameters to match (``column="amount_log"``); ``legend`` may use ``{{parameter}}``. A series
without ``tags`` only matches your monitor's snapshots. Panels are matched by title within your
tab: pass the same list on every run; change one by changing its definition; a title no longer
passed stays on the dashboard (delete it in the UI). The UI picks up new runs and dashboard changes without a restart.
"""

from __future__ import annotations

import fcntl
import shutil
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from foundation.settings import Settings
from monitoring import sources

if TYPE_CHECKING:
    from evidently.core.report import Snapshot
    from evidently.core.serialization import SnapshotModel
    from evidently.sdk.models import (
        DashboardModel,
        DashboardPanelPlot,
        DashboardTabModel,
        PanelMetric,
    )
    from evidently.ui.service.type_aliases import ProjectID
    from evidently.ui.storage.local.base import LocalState

PROJECT = "fraudlab"
PROJECT_DESCRIPTION = (
    "fraudlab monitoring: one snapshot per monitor run (tagged with the monitor), one dashboard "
    "tab per monitor"
)
VERDICTS = ("alert", "warn", "ok")
# The dashboard's order, top to bottom: the monitors `fraudlab monitor` runs, drift first
# (the one that triggers a retrain); a monitor not named here comes after them.
MONITORS = (
    "drift",
    "skew",
    "performance",
    "decisions",
    "freshness",
    "latency",
    "quality",
    "requests",
)
STATUS_TAB = "status"
STATUS_COLUMN = "status"
LOCK_FILE = "workspace.lock"


@contextmanager
def _quiet_import() -> Iterator[None]:
    """Evidently's import warns about numpy and litestar internals no fraudlab user can fix."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


@contextmanager
def _locked(settings: Settings) -> Iterator[None]:
    """One writer at a time: the monitor DAG runs drift and skew in parallel, and two first runs
    would otherwise each create a "fraudlab" project, or overwrite each other's dashboard.

    The lock file sits next to the workspace, not in it: the UI watches the workspace folder.
    """
    path = settings.monitoring_dir / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- panels ------------------------------------------------------------------------------------


def series(
    metric: str, legend: str | None = None, tags: Sequence[str] = (), **labels: object
) -> PanelMetric:
    """One plotted value: Evidently metric type ``metric`` whose parameters include ``labels``.

    Label values are matched as Evidently stores them, as strings (``categories="['alert']"``).
    """
    with _quiet_import():
        from evidently.sdk.models import PanelMetric

    return PanelMetric(
        metric=metric,
        legend=legend,
        tags=list(tags),
        metric_labels={key: str(value) for key, value in labels.items()},
    )


def line_panel(
    title: str, values: Sequence[PanelMetric], description: str | None = None
) -> DashboardPanelPlot:
    """A value over time, one line per series (and per matching column)."""
    with _quiet_import():
        from evidently.sdk.panels import line_plot_panel

    return line_plot_panel(title, list(values), description=description, size="full")


def bar_panel(
    title: str, values: Sequence[PanelMetric], description: str | None = None
) -> DashboardPanelPlot:
    """Stacked bars over time, one bar per run."""
    with _quiet_import():
        from evidently.sdk.panels import bar_plot_panel

    return bar_plot_panel(title, list(values), description=description, size="half", stacked=True)


def counter_panel(
    title: str, values: Sequence[PanelMetric], description: str | None = None
) -> DashboardPanelPlot:
    """The latest run's value of each series, as big numbers."""
    with _quiet_import():
        from evidently.sdk.panels import counter_panel as evidently_counter_panel

    return evidently_counter_panel(
        title, list(values), description=description, size="half", aggregation="last"
    )


def _verdict_series(verdicts: Sequence[str]) -> list[PanelMetric]:
    return [
        series(
            "CategoryCount",
            legend=verdict,
            column=STATUS_COLUMN,
            categories=[verdict],
            value_type="count",
        )
        for verdict in verdicts
    ]


def status_panel(monitor: str, noun: str) -> DashboardPanelPlot:
    """A monitor's status over time: how many of its checks were at each verdict, per run."""
    return bar_panel(
        f"{monitor}: {noun} by verdict, per run",
        _verdict_series(VERDICTS),
        description=f"one bar per {monitor} run: its {noun} at alert, warn and ok",
    )


def check_panels(monitor: str, noun: str) -> list[DashboardPanelPlot]:
    """The monitor's status panel (first), then how many checks are at warn / alert now."""
    return [
        status_panel(monitor, noun),
        counter_panel(
            f"{monitor}: {noun} at alert / warn (latest run)",
            _verdict_series(("alert", "warn")),
        ),
    ]


def drift_panels(features: Sequence[str], score: str = "score") -> list[DashboardPanelPlot]:
    """PSI of each model input and of the score over time (``monitoring.drift``'s runs).

    Defined here because drift's own module keeps only its judgement; other monitors may
    define theirs next to their judgement and pass them to ``add_snapshot``.
    """
    return [
        line_panel(
            f"PSI of the {score}",
            [series("ValueDrift", legend=f"PSI {score}", column=score)],
            description="the score's distribution vs the champion's training sample",
        ),
        line_panel(
            "PSI per model input",
            [series("ValueDrift", legend=feature, column=feature) for feature in features],
            description="each input's distribution in the window vs the training sample",
        ),
    ]


# --- the workspace -----------------------------------------------------------------------------


def _store(directory: Path) -> LocalState:
    """Evidently's own file layout of a local workspace at ``directory`` (created when missing).

    Not ``evidently.ui.workspace.Workspace``: constructing one parses every run stored so far
    (measured: ~0.1 s per drift run of 21 columns), so each monitor run would get slower for
    ever. This is the storage that class writes through, and all a writer needs.
    """
    with _quiet_import():
        from evidently.ui.storage.local.base import LocalState

    directory.mkdir(parents=True, exist_ok=True)
    return LocalState(str(directory))


def project_id(store: LocalState, directory: Path | None = None) -> ProjectID:
    """The "fraudlab" project's id, creating the project on first use (call under ``_locked``).

    A new project is written in a staging folder and moved into the workspace in one rename:
    the Evidently UI watches the workspace, and its watcher thread dies for good when it reads
    a project file half written (seen on the first run after the UI started on an empty one).
    """
    with _quiet_import():
        from evidently.sdk.models import ProjectModel

    for candidate in store.list_projects():
        if store.read_project(candidate).name == PROJECT:
            return candidate
    model = ProjectModel(name=PROJECT, description=PROJECT_DESCRIPTION)
    if directory is None:
        return store.write_project(model).id
    staging = directory.parent / f".{directory.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    project = _store(staging).write_project(model).id
    (staging / str(project)).rename(directory / str(project))
    shutil.rmtree(staging, ignore_errors=True)
    return project


def prune(directory: Path, project: ProjectID, keep: int) -> int:
    """Delete all but the newest ``keep`` runs of the project; the number deleted.

    The UI holds every stored run in memory (a drift run of 21 columns ~7 MB), so an unbounded
    history would grow it without limit. Run ids are time-ordered (UUIDv7), so their file names
    sort oldest first.
    """
    runs = sorted((directory / str(project) / "snapshots").glob("*.json"))
    old = runs[: max(0, len(runs) - keep)]
    for path in old:
        path.unlink(missing_ok=True)
    return len(old)


def _tab(dashboard: DashboardModel, title: str) -> DashboardTabModel:
    """The tab called ``title``, added at the end when missing."""
    with _quiet_import():
        from evidently.sdk.models import DashboardTabModel

    found = next((t for t in dashboard.tabs if t.title == title), None)
    if found is None:
        found = DashboardTabModel(title=title, panels=[])
        dashboard.tabs.append(found)
    return found


def _rank(title: str | None) -> int:
    order = (STATUS_TAB, *MONITORS)
    return order.index(title) if title in order else len(order)


def _laid_out(dashboard: DashboardModel) -> DashboardModel:
    """The dashboard with its tabs in ``MONITORS`` order after the status tab, the status tab's
    panels in the order of their monitors' tabs, and ``panels`` in that order, flattened (the
    order the UI draws them in). A panel in no tab keeps its place after the rest."""
    tabs = sorted(dashboard.tabs, key=lambda t: _rank(t.title))  # stable: unknown in order
    owner = {pid: i for i, t in enumerate(tabs) if t.title != STATUS_TAB for pid in t.panels}
    for tab in tabs:
        if tab.title == STATUS_TAB:
            tab.panels.sort(key=lambda pid: owner.get(pid, len(tabs)))
    by_id = {p.id: p for p in dashboard.panels}
    order = list(dict.fromkeys(pid for t in tabs for pid in t.panels if pid in by_id))
    order += [p.id for p in dashboard.panels if p.id not in set(order)]
    return dashboard.copy(update={"tabs": tabs, "panels": [by_id[pid] for pid in order]})


def sync_panels(
    store: LocalState,
    project: ProjectID,
    tab: str,
    panels: Sequence[DashboardPanelPlot],
    status: str | None = None,
) -> bool:
    """Make ``tab`` hold ``panels`` (matched by title), the one titled ``status`` also in the
    status tab, and lay the dashboard out (``_laid_out``); True when the dashboard changed.

    A missing panel is added, a panel whose definition changed is replaced in place (same id);
    panels of other tabs, and titles not passed, are left alone.
    """
    dashboard = store.read_dashboard(project)
    before = dashboard.dict()
    target = _tab(dashboard, tab)
    index = {p.id: i for i, p in enumerate(dashboard.panels)}
    existing = {
        dashboard.panels[index[pid]].title: index[pid] for pid in target.panels if pid in index
    }
    for panel in panels:
        position = existing.get(panel.title)
        if position is None:
            dashboard.panels.append(panel)
            target.panels.append(panel.id)
            existing[panel.title] = len(dashboard.panels) - 1
            continue
        current = dashboard.panels[position]
        if current.dict(exclude={"id"}) != panel.dict(exclude={"id"}):
            dashboard.panels[position] = panel.copy(update={"id": current.id})
    if status is not None and status in existing:
        lead = _tab(dashboard, STATUS_TAB)
        pid = dashboard.panels[existing[status]].id
        if pid not in lead.panels:
            lead.panels.append(pid)
    dashboard = _laid_out(dashboard)
    changed = dashboard.dict() != before
    if changed:
        store.write_dashboard(project, dashboard)
    return changed


def _checks_snapshot(checks: Mapping[str, str]) -> Snapshot:
    """Evidently's count of checks per verdict (one row per check, its verdict in "status")."""
    import pandas as pd

    with _quiet_import():
        from evidently import DataDefinition, Dataset, Report
        from evidently.metrics import CategoryCount

    frame = pd.DataFrame({"check": list(checks), STATUS_COLUMN: list(checks.values())})
    definition = DataDefinition(categorical_columns=[STATUS_COLUMN])
    report = Report([CategoryCount(column=STATUS_COLUMN, category=v) for v in VERDICTS])
    return report.run(current_data=Dataset.from_pandas(frame, data_definition=definition))


def stored_model(
    snapshot: Snapshot,
    *,
    monitor: str,
    name: str,
    checks: Mapping[str, str] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> SnapshotModel:
    """What the workspace stores for one run: ``snapshot`` named, tagged with ``monitor``, and
    with the count of ``checks`` per verdict added to it (``snapshot`` itself is unchanged).

    The counts come from a second report (its data is the verdicts, not the monitor's data);
    merging its results into the same snapshot keeps one workspace run per monitor run, which
    the dashboard's time axis and the UI's run list both assume.
    """
    model = snapshot.to_snapshot_model()
    update: dict[str, object] = {
        "name": name,
        "tags": list(dict.fromkeys([*model.tags, monitor])),
        "metadata": {**model.metadata, "monitor": monitor, **(metadata or {})},
    }
    if checks:
        counts = _checks_snapshot(checks).to_snapshot_model()
        update |= {
            "metric_results": {**model.metric_results, **counts.metric_results},
            "top_level_metrics": [*model.top_level_metrics, *counts.top_level_metrics],
            "widgets": [*model.widgets, *counts.widgets],
        }
    return model.copy(update=update)


def add_snapshot(
    settings: Settings,
    snapshot: Snapshot,
    *,
    monitor: str,
    name: str,
    checks: Mapping[str, str] | None = None,
    check_noun: str = "checks",
    metadata: Mapping[str, str] | None = None,
    panels: Sequence[DashboardPanelPlot] = (),
) -> str:
    """Store one monitor run in the workspace and keep the monitor's dashboard tab; the run id.

    ``checks`` maps each thing the monitor judged to its verdict, one of ok / warn / alert.
    """
    unknown = sorted(set((checks or {}).values()) - set(VERDICTS))
    if unknown:
        raise ValueError(
            f"{monitor}: verdicts {unknown} cannot be charted; give each check one of {VERDICTS}"
        )
    with _quiet_import():
        from evidently.legacy.core import new_id

    model = stored_model(snapshot, monitor=monitor, name=name, checks=checks, metadata=metadata)
    wanted = [*(check_panels(monitor, check_noun) if checks else []), *panels]
    wanted = [_restricted(panel, monitor) for panel in wanted]
    status = status_panel(monitor, check_noun).title if checks else None
    run_id = new_id()
    directory = sources.workspace_dir(settings)
    with _locked(settings):
        store = _store(directory)
        project = project_id(store, directory)
        store.write_snapshot(project, run_id, model)
        sync_panels(store, project, monitor, wanted, status)
        prune(directory, project, settings.workspace_keep_runs)
    return str(run_id)


def _restricted(panel: DashboardPanelPlot, monitor: str) -> DashboardPanelPlot:
    """The panel with every untagged series limited to ``monitor``'s snapshots."""
    values = [v if v.tags else v.copy(update={"tags": [monitor]}) for v in panel.values]
    return panel.copy(update={"values": values})
