"""ScenarioContext's seams that need no running stack: the clock and the world are read where
the stack writes them, a raw table a scenario writes is the one the stack reads, a paused
schedule holds its job until resumed, and the prediction log reads as the monitors read it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pandas as pd

from foundation.settings import REPO_ROOT, Settings
from lab.context import ScenarioContext
from lab.manifest import Choice, Variant
from pipelines import data
from tests.conftest import prediction_record

JOB = "fraudlab_materialize"


def context(tmp_path) -> ScenarioContext:
    return ScenarioContext(
        settings=Settings(_env_file=None, home=tmp_path / "home"),
        scenario_id="00",
        seed=0,
        variant=Variant({"size": Choice(value=1)}),
        repo=tmp_path,
        private={},
        resources=lambda name: b"",
    )


def test_the_clock_and_the_world_are_read_where_the_stack_writes_them(tmp_path) -> None:
    ctx = context(tmp_path)
    ctx.settings.data_dir.mkdir(parents=True)
    meta = {"now": "2026-03-16T00:00:00+00:00", "start": "2026-01-01", "transactions_hash": "a1"}
    data.meta_path(ctx.settings).write_text(json.dumps(meta))

    assert ctx.world_meta()["transactions_hash"] == "a1"
    assert ctx.clock() == pd.Timestamp("2026-03-16T00:00:00+00:00")  # end of history
    data.write_clock(ctx.settings, pd.Timestamp("2026-03-17T06:30:00+00:00"))  # the simulator
    assert ctx.clock() == pd.Timestamp("2026-03-17T06:30:00+00:00")


def test_a_raw_table_a_scenario_writes_is_the_one_the_stack_reads(tmp_path) -> None:
    ctx = context(tmp_path)
    ctx.settings.data_dir.mkdir(parents=True)
    txns = pd.DataFrame({"txn_id": [1, 2, 3], "amount": [9.5, 120.0, 3.25]})
    ctx.write_raw("transactions", txns)

    read = data.read_raw(ctx.settings, "transactions")
    pd.testing.assert_frame_equal(read, txns)
    pd.testing.assert_frame_equal(ctx.read_raw("transactions"), txns)
    assert ctx.data_hash(read) == data.frame_hash(txns)
    changed = txns.assign(amount=txns["amount"] * 2)
    assert ctx.data_hash(changed) != ctx.data_hash(txns)


def test_a_paused_schedule_holds_its_job_until_it_is_resumed(tmp_path) -> None:
    ctx = context(tmp_path)
    assert ctx.schedule_active(JOB)
    assert ctx.pause_schedule(JOB)
    assert not ctx.pause_schedule(JOB)  # already paused
    assert not ctx.schedule_active(JOB)
    assert any(line.startswith(f"{JOB}: PAUSED") for line in ctx.describe_schedules())
    assert ctx.resume_schedule(JOB)
    assert ctx.schedule_active(JOB)
    assert not ctx.resume_schedule(JOB)


def write_log(directory, records) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(r.to_json()) + "\n" for r in records)
    (directory / "predictions-2026-03-01.jsonl").write_text(lines)


def test_the_prediction_log_reads_as_the_monitors_read_it(tmp_path) -> None:
    ctx = context(tmp_path)
    start = 1_772_323_200.0
    records = [
        prediction_record(
            request_id=f"r{i}",
            event_ts=start + i * 1800.0,  # every half hour: 2 h from the first to the last
            logged_at=f"2026-03-01T0{i}:00:00+00:00",
            synthetic=i == 2,
        )
        for i in range(5)
    ]
    write_log(ctx.settings.prediction_log_dir, records)

    production = [r.request_id for r in ctx.prediction_log()]
    assert production == ["r4", "r3", "r1", "r0"]  # newest first, the synthetic one left out
    since = datetime(2026, 3, 1, 3, tzinfo=UTC)
    assert [r.request_id for r in ctx.prediction_log(logged_since=since)] == ["r4", "r3"]
    everything = ctx.prediction_log(include_synthetic=True)
    assert [r.request_id for r in everything] == ["r4", "r3", "r2", "r1", "r0"]

    window = ctx.prediction_window(24.0)
    assert [r.request_id for r in window] == ["r0", "r1", "r3", "r4"]  # oldest first
    assert [r.request_id for r in ctx.prediction_window(1.0)] == ["r3", "r4"]
    assert ctx.prediction_window(24.0, min_span_hours=2.0) == window
    assert ctx.prediction_window(24.0, min_span_hours=2.5) == []  # less than that is covered

    elsewhere = tmp_path / "judged"
    write_log(elsewhere, records[:2])
    assert [r.request_id for r in ctx.prediction_window(24.0, log_dir=elsewhere)] == ["r0", "r1"]


def test_the_stack_code_is_the_code_this_process_runs(tmp_path) -> None:
    ctx = context(tmp_path)
    assert ctx.read_stack_code("lab/context.py") == (REPO_ROOT / "lab/context.py").read_text()
