"""Monitors judge what the serving release running now scored: a fixed stack must not keep
alarming on what a broken release logged before it (and the split by release is shown)."""

from __future__ import annotations

import json

from monitoring import sources
from tests.conftest import prediction_record


def write(directory, records) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r.to_json()) + "\n" for r in records)
    (directory / "predictions-2026-11-23.jsonl").write_text(text)


def log_of_two_releases(tmp_path):
    broken = [
        prediction_record(request_id=f"b{i}", event_ts=1000.0 + i, release="r2")
        for i in range(500)
    ]
    fixed = [
        prediction_record(request_id=f"f{i}", event_ts=2000.0 + i, release="r3") for i in range(30)
    ]
    # the newest line is a load test's: it still tells which release serves now
    probe = prediction_record(request_id="p", event_ts=3000.0, release="r3", synthetic=True)
    write(tmp_path, [*broken, *fixed, probe])
    return tmp_path


def test_the_current_release_only_leaves_out_what_earlier_releases_scored(tmp_path) -> None:
    log_dir = log_of_two_releases(tmp_path)
    everything = sources.read_recent(log_dir, 1000)
    assert sources.by_release(everything) == {"r2": 500, "r3": 30}
    current = sources.read_recent(log_dir, 1000, current_release_only=True)
    assert [r.request_id for r in current] == [f"f{i}" for i in range(30)]
    window = sources.read_window(log_dir, hours=10.0, current_release_only=True)
    assert sources.by_release(window) == {"r3": 30}


def test_records_without_a_release_count_as_one_unknown_release(tmp_path) -> None:
    write(tmp_path, [prediction_record(request_id=f"u{i}") for i in range(3)])
    current = sources.read_recent(tmp_path, 10, current_release_only=True)
    assert len(current) == 3 and sources.by_release(current) == {"unknown": 3}
