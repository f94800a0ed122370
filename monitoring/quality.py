"""Request data quality: what serving was asked to score, against the suite its input must pass.

Owns: running the Great Expectations suite for logged requests
(``pipelines.validation.validate_logged_requests``: schema, nulls, ranges, vocabularies, volume)
over the newest production records of the prediction log, and its outputs (``quality.json``,
``quality.html`` in the run folder, the failure count in the Evidently workspace's "quality"
tab). An upstream change that starts sending nulls, negative amounts or a new channel shows
here in words a person acts on, before it shows as drift or as a worse model.
Must not: define expectations (``pipelines.validation`` owns every suite) or read the log other
than through ``monitoring.sources``.
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from foundation.settings import Settings
from monitoring import gauges, sources

Status = Literal["ok", "alert", "insufficient_data"]


@dataclass
class QualityResult:
    status: Status
    n_records: int
    n_checks: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: float | None = None
    run_dir: str | None = None
    workspace_run: str | None = None
    workspace_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compute_quality(records: list[dict[str, Any]], max_amount: float) -> QualityResult:
    """Judge logged requests with the logged-requests suite; no I/O."""
    if not records:
        return QualityResult("insufficient_data", 0)
    from pipelines.validation import validate_logged_requests

    checked = validate_logged_requests(records, max_amount)
    return QualityResult(
        status="ok" if checked.passed else "alert",
        n_records=checked.n_rows,
        n_checks=checked.n_checks,
        failures=list(checked.failures),
    )


def workspace_panels() -> list:
    from monitoring import workspace

    return [
        workspace.line_panel(
            "Failed expectations on logged requests",
            [gauges.series("failed_expectations", "failed")],
            description="pipelines/validation.py, suite 'logged requests'",
        )
    ]


def render_html(result: QualityResult) -> str:
    items = "".join(f"<li>{html.escape(line)}</li>" for line in result.failures)
    body = f"<ul>{items}</ul>" if items else "<p>Every expectation holds.</p>"
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>fraudlab request quality"
        "</title><style>body{font-family:sans-serif}</style></head><body>"
        f"<h1>Request data quality: {html.escape(result.status)}</h1>"
        f"<p>{result.n_records:,} logged requests, {result.n_checks} expectations "
        "(pipelines/validation.py, logged requests).</p>"
        f"{body}</body></html>"
    )


def run_quality(settings: Settings, run_dir: Path | None = None) -> QualityResult:
    """Check the newest ``monitor_window`` production requests; write the reports."""
    started = time.perf_counter()
    run_dir = run_dir or sources.new_run_dir(settings)
    # fallback scores included: the request is what is judged, not the features it found
    records = sources.read_recent(
        settings.prediction_log_dir,
        settings.monitor_window,
        include_fallback=True,
        current_release_only=settings.monitor_current_release_only,
    )
    result = compute_quality(records, settings.max_amount)
    result.run_dir = str(run_dir)
    if result.status != "insufficient_data":
        result.workspace_run, result.workspace_error = gauges.record(
            settings,
            monitor="quality",
            name=f"quality {run_dir.name}",
            values={"failed_expectations": len(result.failures), "requests": result.n_records},
            checks={"logged requests": result.status},
            check_noun="suites",
            panels=workspace_panels(),
        )
    result.seconds = round(time.perf_counter() - started, 2)
    (run_dir / "quality.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    (run_dir / "quality.html").write_text(render_html(result))
    return result
