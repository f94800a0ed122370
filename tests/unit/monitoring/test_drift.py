"""Drift: a shifted feature alarms, a sample from the training distribution does not, a tiny or
part-of-a-day window gets no verdict, PSI bins are stable; the log window readers return the
newest production records."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from foundation.settings import Settings
from model.record import PredictionRecord
from model.registry import ModelBundle
from monitoring import drift, sources, workspace
from tests.conftest import prediction_record

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


def test_part_of_a_day_gets_no_verdict_even_when_shifted() -> None:
    result, snapshot = drift.compute_drift(
        sample(5000, seed=1),
        sample(2000, seed=2, amount_shift=3.0),
        COLUMNS,
        warn=WARN,
        alert=ALERT,
        min_records=MIN,
        span_hours=6.0,
        min_span_hours=22.8,
    )
    assert result.status == "insufficient_data" and snapshot is None
    assert "6.0 h" in result.reason and "daily cycle" in result.reason


def test_psi_is_zero_for_the_same_distribution_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(0.0, 1.0, 20_000)
    assert drift.psi(reference, rng.normal(0.0, 1.0, 5_000)) < 0.01
    assert 0.05 < drift.psi(reference, rng.normal(0.3, 1.0, 5_000)) < 0.12  # textbook: ~0.09
    assert drift.psi(reference, rng.normal(1.0, 1.0, 5_000)) > 0.5
    assert np.isnan(drift.psi(reference, np.array([np.nan])))


def test_psi_of_a_heavy_tailed_count_is_stable() -> None:
    """Merchant volume: a few huge merchants, many small ones. Bins from the pooled range put
    nearly all rows in the first bin and a handful in each of the others, whose ratios then
    swing with single rows; deciles of the reference do not."""
    rng = np.random.default_rng(1)
    reference = np.round(rng.lognormal(3.5, 1.2, 20_000))
    same = np.round(rng.lognormal(3.5, 1.2, 7_000))
    grown = np.round(rng.lognormal(3.5, 1.2, 7_000) * 1.05)  # 5 % more business
    assert drift.psi(reference, same) < 0.01
    assert drift.psi(reference, grown) < 0.02
    assert drift.psi(reference, reference * 2) > 0.2  # a real doubling still alarms


def merchant_volume_days(seed: int, days: int, per_day: int = 3000) -> list[np.ndarray]:
    """A week's purchases at the merchant of each purchase, day by day: heavy-tailed, and
    clumped (all of a merchant's purchases on a day share its count), nothing drifting."""
    rng = np.random.default_rng(seed)
    popularity = np.minimum(rng.pareto(1.5, 1500) + 1.0, 60.0)
    share = popularity / popularity.sum()
    out = []
    for _ in range(days):
        weekly = rng.poisson(share * per_day * 7).astype(float)
        out.append(weekly[rng.choice(share.size, per_day, p=share)])
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pooled_equal_width_bins_cry_wolf_where_reference_bins_do_not(seed: int) -> None:
    """Evidently's built-in binning ('pooled'), made finer: the tail's narrow bins each hold a
    few merchants' clumps, which move from one day to the next, so a steady day alarms."""
    *history, today = merchant_volume_days(seed, 18)
    reference = pd.DataFrame({"merchant_txn_count_7d": np.concatenate(history)})
    current = pd.DataFrame({"merchant_txn_count_7d": today})
    columns = ["merchant_txn_count_7d"]
    kwargs = {"warn": WARN, "alert": ALERT, "min_records": MIN}
    steady, _ = drift.compute_drift(reference, current, columns, **kwargs)
    noisy, _ = drift.compute_drift(
        reference, current, columns, bins=100, binning="pooled", **kwargs
    )
    assert steady.status == "ok" and steady.columns[0].psi < 0.05
    assert noisy.status == "alert" and (noisy.bins, noisy.binning) == (100, "pooled")
    assert Settings(_env_file=None).psi_binning == "reference"


def test_few_valued_columns_get_a_bin_per_value_and_unseen_values_count() -> None:
    reference = np.repeat([-1.0, 0.0, 1.0, 2.0], [100, 5000, 3000, 1900])
    assert drift.bin_edges(reference, 10)[1] is True
    assert drift.psi(reference, reference[::3]) < 0.01
    unseen = np.concatenate([reference[::3], np.full(600, 9.0)])  # a new category appears
    assert drift.psi(reference, unseen) > 0.2


@pytest.mark.parametrize(
    ("psi", "status"),
    [(0.0, "ok"), (0.0999, "ok"), (0.1, "warn"), (0.19, "warn"), (0.2, "alert"), (None, "ok")],
)
def test_thresholds(psi: float | None, status: str) -> None:
    assert drift.judge(psi, WARN, ALERT) == status


def record(i: int, *, fallback: bool = False) -> dict:
    """A logged record as its JSON line holds it."""
    return prediction_record(
        request_id=f"r{i}",
        event_ts=1_775_000_000.0 + i,
        fallback=fallback,
        model_inputs={"amount_log": float(i), "velocity_1h": 0.0, "is_web": 1.0},
        score=0.01,
    ).to_json()


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
    assert [r.request_id for r in window] == [f"r{i}" for i in (7, 8, 9, 11, 13, 15, 17, 19)]
    frame = drift.window_frame(window, ["amount_log", "velocity_1h", "is_web"])
    assert list(frame.columns) == ["amount_log", "velocity_1h", "is_web", "score"]
    assert frame["amount_log"].tolist() == [7.0, 8.0, 9.0, 11.0, 13.0, 15.0, 17.0, 19.0]
    assert sources.read_recent(tmp_path / "nothing-logged-yet", 8) == []


def test_the_event_time_window_ends_at_the_newest_record(tmp_path) -> None:
    records = [record(i) for i in range(0, 3600 * 30, 600)]  # one every 10 min, 30 hours
    records[-2]["synthetic"] = True
    write_log(tmp_path, "2026-11-23", records)
    window = sources.read_window(tmp_path, hours=24)
    newest = records[-1]["event_ts"]
    assert window[-1].request_id == records[-1]["request_id"]
    assert all(newest - r.event_ts <= 24 * 3600 for r in window)
    assert len(window) == 24 * 6 + 1 - 1  # 145 records in 24 h, minus the synthetic one
    assert sources.span_hours(window) == pytest.approx(24.0)
    assert len(sources.read_window(tmp_path, hours=24, max_records=10)) == 10


def test_a_window_read_tolerates_clients_interleaving_the_log(tmp_path) -> None:
    """Two clients replaying concurrently: one runs up to half an hour of event time ahead."""
    times = [i * 600.0 for i in range(30 * 6)]  # 30 hours, one every 10 minutes
    logged = sorted(times, key=lambda t: t - 1800.0 * (int(t / 600) % 2))  # odd ones lag
    write_log(tmp_path, "2026-11-23", [{**record(0), "event_ts": t} for t in logged])
    window = sources.read_window(tmp_path, hours=24)
    newest = max(times)
    assert [r.event_ts for r in window] == [t for t in times if t >= newest - 24 * 3600]


def test_synthetic_requests_are_not_production_traffic(tmp_path) -> None:
    records = [record(i) for i in range(6)]
    for r in records[1::2]:
        r["synthetic"] = True  # a load test's requests, interleaved with real traffic
    write_log(tmp_path, "2026-11-23", records)
    assert [r.request_id for r in sources.read_recent(tmp_path, 10)] == ["r0", "r2", "r4"]
    everything = sources.read_recent(tmp_path, 10, include_synthetic=True)
    assert [r.request_id for r in everything] == [f"r{i}" for i in range(6)]


@pytest.mark.slow
def test_run_drift_writes_reports_and_grows_the_workspace(tmp_path, monkeypatch) -> None:
    settings = Settings(
        _env_file=None,
        home=tmp_path,
        monitor_window_hours=10,
        monitor_window=500,
        monitor_min_records=500,
    )
    bundle_dir = tmp_path / "bundle"
    bundle_dir.mkdir()
    sample(2000, seed=1).to_parquet(bundle_dir / drift.REFERENCE_FILE)
    bundle = ModelBundle("fraud-detector", "7", "run", bundle_dir, {"feature_order": COLUMNS[:-1]})
    monkeypatch.setattr(sources, "load_champion", lambda _settings: bundle)
    current = sample(700, seed=3, amount_shift=1.0)
    records = [
        prediction_record(
            request_id=f"r{i}",
            event_ts=60.0 * i,  # one a minute: 700 records over 11.6 hours
            model_version="7",
            model_inputs=row[COLUMNS[:-1]].to_dict(),
            score=row["score"],
        ).to_json()
        for i, row in current.iterrows()
    ]
    write_log(settings.prediction_log_dir, "2026-11-23", records)

    first = drift.run_drift(settings)
    second = drift.run_drift(settings)

    # 10 hours of the 11.6 logged: 601 predictions, thinned evenly to 500
    assert first.status == "alert" and first.n_current == 500 and first.model_version == "7"
    assert first.span_hours == pytest.approx(10.0)
    for result in (first, second):
        run_dir = sources.Path(result.run_dir)
        summary = json.loads((run_dir / "drift.json").read_text())
        assert summary["status"] == "alert"
        assert {c["column"] for c in summary["columns"] if c["status"] == "alert"} == {
            "amount_log"
        }
        assert (run_dir / "drift.html").stat().st_size > 10_000
    from evidently.ui.workspace import Workspace

    evidently_workspace = Workspace(str(sources.workspace_dir(settings)))
    [project] = evidently_workspace.search_project(workspace.PROJECT)
    assert len(evidently_workspace.list_runs(project.id)) == 2


def test_only_the_champions_own_scores_are_judged(tmp_path, monkeypatch) -> None:
    """Right after a promotion the window holds the old champion's scores: they differ from the
    new one's reference by design, and must not read as drift."""
    settings = Settings(
        _env_file=None,
        home=tmp_path,
        monitor_window_hours=10,
        monitor_window=2000,
        monitor_min_records=500,
    )
    bundle_dir = tmp_path / "bundle"
    bundle_dir.mkdir()
    sample(2000, seed=1).to_parquet(bundle_dir / drift.REFERENCE_FILE)
    bundle = ModelBundle("fraud-detector", "8", "run", bundle_dir, {"feature_order": COLUMNS[:-1]})
    current = sample(700, seed=3)

    def records(scored_by: str, score_shift: float) -> list[PredictionRecord]:
        return [
            prediction_record(
                request_id=f"r{i}",
                event_ts=60.0 * i,
                model_inputs=row[COLUMNS[:-1]].to_dict(),
                score=min(1.0, row["score"] + score_shift),
                model_version=scored_by,
            )
            for i, row in current.iterrows()
        ]

    old_model = records("7", score_shift=0.3)  # another model's scores: far from "8"'s
    result, _, _ = drift.judge_window(settings, bundle, old_model[:601])
    score = {c.column: c for c in result.columns}["score"]
    assert score.psi is None and score.status == "ok"  # none of "8"'s own: not judged
    assert result.status == "ok"
    mine = records("8", score_shift=0.3)  # the champion's own scores, shifted: real drift
    result, _, _ = drift.judge_window(settings, bundle, mine[:601])
    assert {c.column: c for c in result.columns}["score"].status == "alert"
