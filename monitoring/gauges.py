"""Numbers a monitor computed itself, as Evidently snapshots for the workspace.

Owns: turning a flat mapping of named numbers (a p99, a feature view's age, a live recall) into
an Evidently ``Snapshot`` that ``monitoring.workspace`` can store and chart, and the panel
series that read them back. Used by the performance, freshness and latency monitors, whose
numbers come from their own judgement (``model.evaluation``'s metrics, the registry, the
log), not from an Evidently metric.
Must not: compute any of those numbers, or write the workspace (``monitoring.workspace`` does).

Each number becomes a one-row numeric column read by Evidently's ``MeanValue`` (the mean of one
value is that value), so a panel charts it over runs like any other metric: ``series(name)``.
Missing and non-finite numbers are left out of the run (a gap in the chart, not a zero).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from foundation.settings import Settings
from monitoring import workspace

if TYPE_CHECKING:
    from evidently.core.report import Snapshot
    from evidently.sdk.models import DashboardPanelPlot, PanelMetric

log = logging.getLogger("fraudlab.monitoring")
METRIC = "MeanValue"


def finite(values: Mapping[str, float | int | None]) -> dict[str, float]:
    return {
        name: float(v) for name, v in values.items() if v is not None and math.isfinite(float(v))
    }


def snapshot(values: Mapping[str, float | int | None]) -> Snapshot | None:
    """One run holding ``values`` (None when none of them is a finite number)."""
    import pandas as pd

    numbers = finite(values)
    if not numbers:
        return None
    with warnings.catch_warnings():  # Evidently's import warns about its own dependencies
        warnings.simplefilter("ignore", DeprecationWarning)
        from evidently import DataDefinition, Dataset, Report
        from evidently.metrics import MeanValue

    frame = pd.DataFrame({name: [value] for name, value in numbers.items()})
    definition = DataDefinition(numerical_columns=list(numbers))
    report = Report([MeanValue(column=name) for name in numbers])
    return report.run(current_data=Dataset.from_pandas(frame, data_definition=definition))


def series(name: str, legend: str | None = None) -> PanelMetric:
    """The panel series of the number ``name`` over runs."""
    return workspace.series(METRIC, legend=legend or name, column=name)


def record(
    settings: Settings,
    *,
    monitor: str,
    name: str,
    values: Mapping[str, float | int | None],
    checks: Mapping[str, str],
    check_noun: str,
    panels: Sequence[DashboardPanelPlot],
    metadata: Mapping[str, str] | None = None,
) -> tuple[str | None, str | None]:
    """Store one run of ``monitor`` in the workspace: (run id, None) or (None, why not).

    The monitor's JSON and HTML are its record of truth; a workspace that cannot be written
    (disk, a newer Evidently) is reported next to them instead of failing the monitor.
    """
    try:
        run = snapshot(values)
        if run is None:
            return None, "no number to record"
        judged = {c: verdict for c, verdict in checks.items() if verdict in workspace.VERDICTS}
        run_id = workspace.add_snapshot(
            settings,
            run,
            monitor=monitor,
            name=name,
            checks=judged or None,
            check_noun=check_noun,
            metadata=metadata,
            panels=panels,
        )
        return run_id, None
    except Exception as exc:  # noqa: BLE001 - see the docstring
        log.warning("%s: could not add the run to the Evidently workspace: %s", monitor, exc)
        return None, f"{type(exc).__name__}: {exc}"
