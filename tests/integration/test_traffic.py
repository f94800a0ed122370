"""Traffic against the running stack: the replay simulator and the Locust load test.

Runs after test_embedded_stack.py (file order), whose log test counts every request sent.
"""

from __future__ import annotations

import json

import pytest

from pipelines.data import read_clock

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _log_ids(settings) -> list[str]:
    ids = []
    for path in sorted(settings.prediction_log_dir.glob("*.jsonl")):
        ids += [
            json.loads(line)["transaction_id"]
            for line in path.read_text().splitlines()
            if line.strip()
        ]
    return ids


def test_simulator_replays_in_order_advances_the_clock_and_stops_by_itself(stack) -> None:
    before_clock = read_clock(stack.settings)
    before = set(_log_ids(stack.settings))
    result = stack.cli("simulate", "--rps", "20", "--max-requests", "30", timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    new = [i for i in _log_ids(stack.settings) if i not in before]
    assert len(new) == 30, f"expected 30 scored requests in the log, found {len(new)}"
    assert [int(i) for i in new] == sorted(int(i) for i in new)  # replayed in order
    assert read_clock(stack.settings) > before_clock


def test_loadtest_reports_latency_against_the_budget(stack) -> None:
    result = stack.cli("loadtest", "--rps", "20", "--seconds", "5", timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "p99" in result.stdout
    assert "PASS" in result.stdout or "FAIL" in result.stdout
