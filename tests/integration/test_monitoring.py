"""The monitors against the running stack: `fraudlab monitor` runs, a small log gets no drift
verdict, and requests replayed in order show no training-serving skew at all.

Runs after test_embedded_stack.py (file order) and judges the requests it replayed in order
(transaction ids "it-…"); run on its own, it replays the first future transactions itself.
Other tests deliberately re-send transactions already scored (a repeat sees its own velocity
push, which offline history never does), so the skew assertion is on the in-order replay only.
"""

from __future__ import annotations

import json
import time

import pytest

from model import registry
from model.export import onnx_session
from monitoring import skew, sources
from pipelines.data import read_clock, read_raw
from tests.integration.test_embedded_stack import N_REPLAYED, payload

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _in_order(settings) -> list[dict]:
    records = sources.read_recent(settings.prediction_log_dir, 100_000)
    return [r for r in records if str(r.transaction_id).startswith("it-")]


@pytest.fixture(scope="module")
def replayed_in_order(stack) -> list[dict]:
    if not _in_order(stack.settings):  # this file alone: replay like test_embedded_stack does
        txns = read_raw(stack.settings, "transactions")
        future = txns[txns["event_timestamp"] >= read_clock(stack.settings)]
        for _, row in future.head(N_REPLAYED).iterrows():
            assert stack.score(payload(row)).status_code == 200
        deadline = time.monotonic() + 15
        while len(_in_order(stack.settings)) < N_REPLAYED and time.monotonic() < deadline:
            time.sleep(0.2)
    records = _in_order(stack.settings)
    assert records, "no in-order replayed requests in the prediction log"
    return records


def test_monitor_command_runs_and_a_small_log_gets_no_drift_verdict(
    stack, replayed_in_order
) -> None:
    result = stack.cli("monitor")
    assert result.returncode == 0, result.stdout + result.stderr
    runs = sorted(p for p in stack.settings.monitoring_dir.iterdir() if p.name[:1].isdigit())
    drift = json.loads((runs[-1] / "drift.json").read_text())
    assert drift["status"] == "insufficient_data"  # tens of requests, not hundreds
    summary = json.loads((runs[-1] / "skew.json").read_text())
    assert summary["n_records"] >= len(replayed_in_order)
    assert (runs[-1] / "skew.html").exists()


def test_requests_replayed_in_order_show_no_skew(stack, replayed_in_order) -> None:
    settings = stack.settings
    bundle = sources.load_champion(settings)
    offline = skew.offline_features(
        settings, skew.entity_frame(replayed_in_order), bundle.feature_service
    )
    result = skew.compute_skew(
        replayed_in_order,
        offline,
        session=onnx_session(bundle.onnx_path.read_bytes()),
        feature_order=bundle.feature_order,
        model_version=bundle.version,
    )
    assert isinstance(bundle, registry.ModelBundle)
    bad = [(f.feature, f.mismatches, f.examples) for f in result.features if f.mismatches]
    assert not bad, f"served≠offline: {bad}"
    assert result.score is not None and result.score.compared == len(replayed_in_order)
    assert result.score.differing == 0, result.score
    assert result.status == "ok"
