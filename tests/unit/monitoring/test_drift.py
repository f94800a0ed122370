"""Drift: a shifted feature alarms, a sample from the training distribution does not, a tiny
window gets no verdict; the log window reader returns the newest non-fallback records."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fraudlab.settings import Settings
from monitoring import drift, sources
from pipelines.registry import ModelBundle

COLUMNS = ["amount_log", "velocity_1h", "is_web", "score"]
WARN, ALERT, MIN = 0.1, 0.2, 500


def sample(n: int, seed: int, amount_shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount_log": rng.normal(4.0 + amount_shift, 1.0, n),
            "velocity_1h": rng.exponential(1.0, n),
            "is_web": (rng.random(n) < 0.4).astype(float),
            "score": rng.beta(0.5, 20.0, n),
        }
    )


def judge(current: pd.DataFrame, reference: pd.DataFrame | None = None) -> drift.DriftResult:
    reference = sample(5000, seed=1) if reference is None else reference
    result, _ = drift.compute_drift(
        reference, current, COLUMNS, warn=WARN, alert=ALERT, min_records=MIN
    )
    return result


def test_a_sample_from_the_training_distribution_does_not_alarm() -> None:
    result = judge(sample(1000, seed=2))
    assert result.status == "ok"
    assert [c.column for c in result.columns] == COLUMNS
    assert all(c.psi is not None and c.psi < WARN for c in result.columns)


def test_a_shifted_feature_crosses_the_alert_and_only_it() -> None:
    result = judge(sample(1000, seed=2, amount_shift=1.0))
    by_column = {c.column: c for c in result.columns}
    assert result.status == "alert"
    assert by_column["amount_log"].status == "alert"
    assert by_column["amount_log"].psi > ALERT
    assert [c.column for c in result.flagged] == ["amount_log"]


def test_a_tiny_window_gets_no_verdict_even_when_shifted() -> None:
    result = judge(sample(MIN - 1, seed=2, amount_shift=3.0))
    assert result.status == "insufficient_data"
    assert result.columns == []
    assert result.n_current == MIN - 1


@pytest.mark.parametrize(
    ("psi", "status"),
    [(0.0, "ok"), (0.0999, "ok"), (0.1, "warn"), (0.19, "warn"), (0.2, "alert"), (None, "ok")],
)
def test_thresholds(psi: float | None, status: str) -> None:
    assert drift.judge(psi, WARN, ALERT) == status


def record(i: int, *, fallback: bool = False) -> dict:
    return {
        "request_id": f"r{i}",
        "event_ts": 1_775_000_000.0 + i,
        "fallback": fallback,
        "model_inputs": {"amount_log": float(i), "velocity_1h": 0.0, "is_web": 1.0},
        "score": 0.01,
    }


def write_log(directory, day: str, records: list[dict], torn_tail: bool = False) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in records)
    if torn_tail:
        text += '{"request_id": "torn", "sco'  # a writer mid-flush
    (directory / f"predictions-{day}.jsonl").write_text(text)


def test_window_is_the_newest_non_fallback_records_across_files(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(sources, "BLOCK_BYTES", 64)  # lines straddle blocks
    write_log(tmp_path, "2026-11-22", [record(i) for i in range(10)])
    write_log(
        tmp_path,
        "2026-11-23",
        [record(i, fallback=i % 2 == 0) for i in range(10, 20)],
        torn_tail=True,
    )
    window = sources.read_recent(tmp_path, 8)
    assert [r["request_id"] for r in window] == [f"r{i}" for i in (7, 8, 9, 11, 13, 15, 17, 19)]
    frame = drift.window_frame(window, ["amount_log", "velocity_1h", "is_web"])
    assert list(frame.columns) == ["amount_log", "velocity_1h", "is_web", "score"]
    assert frame["amount_log"].tolist() == [7.0, 8.0, 9.0, 11.0, 13.0, 15.0, 17.0, 19.0]
    assert sources.read_recent(tmp_path / "nothing-logged-yet", 8) == []


def test_synthetic_requests_are_not_production_traffic(tmp_path) -> None:
    records = [record(i) for i in range(6)]
    for r in records[1::2]:
        r["synthetic"] = True  # a load test's requests, interleaved with real traffic
    write_log(tmp_path, "2026-11-23", records)
    assert [r["request_id"] for r in sources.read_recent(tmp_path, 10)] == ["r0", "r2", "r4"]
    everything = sources.read_recent(tmp_path, 10, include_synthetic=True)
    assert [r["request_id"] for r in everything] == [f"r{i}" for i in range(6)]


@pytest.mark.slow
def test_run_drift_writes_reports_and_grows_the_workspace(tmp_path, monkeypatch) -> None:
    settings = Settings(_env_file=None, home=tmp_path, monitor_window=600, monitor_min_records=500)
    bundle_dir = tmp_path / "bundle"
    bundle_dir.mkdir()
    sample(2000, seed=1).to_parquet(bundle_dir / drift.REFERENCE_FILE)
    bundle = ModelBundle("fraud-detector", "7", "run", bundle_dir, {"feature_order": COLUMNS[:-1]})
    monkeypatch.setattr(sources, "load_champion", lambda _settings: bundle)
    current = sample(700, seed=3, amount_shift=1.0)
    records = [
        {
            "request_id": f"r{i}",
            "event_ts": float(i),
            "fallback": False,
            "model_inputs": row[COLUMNS[:-1]].to_dict(),
            "score": row["score"],
        }
        for i, row in current.iterrows()
    ]
    write_log(settings.prediction_log_dir, "2026-11-23", records)

    first = drift.run_drift(settings)
    second = drift.run_drift(settings)

    assert first.status == "alert" and first.n_current == 600 and first.model_version == "7"
    for result in (first, second):
        run_dir = sources.Path(result.run_dir)
        summary = json.loads((run_dir / "drift.json").read_text())
        assert summary["status"] == "alert"
        assert {c["column"] for c in summary["columns"] if c["status"] == "alert"} == {
            "amount_log"
        }
        assert (run_dir / "drift.html").stat().st_size > 10_000
    from evidently.ui.workspace import Workspace

    workspace = Workspace(str(sources.workspace_dir(settings)))
    [project] = workspace.search_project(drift.PROJECT)
    assert len(workspace.list_runs(project.id)) == 2
