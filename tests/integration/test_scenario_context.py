"""What incident scenarios are written with, against the real embedded stack: ScenarioContext
runs the CLI quietly, checks health, and restarts serving with overridden settings and back."""

from __future__ import annotations

import pandas as pd
import pytest

from control import stack as embedded
from foundation.settings import REPO_ROOT
from lab.context import ScenarioContext
from lab.engine import captured
from lab.manifest import Choice, Variant
from pipelines.data import REQUEST_COLUMNS, read_clock, read_raw
from traffic.simulator import payload

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def serving_pid(settings) -> int:
    record = embedded.running(settings, "serving")
    assert record is not None
    return record.pid


def fallbacks(stack, rows: pd.DataFrame, prefix: str) -> list[bool]:
    answers = []
    for _, txn in rows.iterrows():
        body = payload(tuple(txn[c] for c in REQUEST_COLUMNS))
        body = {**body, "transaction_id": f"{prefix}-{txn['txn_id']}", "synthetic": True}
        response = stack.score(body)
        assert response.status_code == 200, response.text
        answers.append(response.json()["fallback"])
    return answers


def test_context_drives_the_running_stack_and_restores_serving(stack) -> None:
    ctx = ScenarioContext(
        settings=stack.settings,
        scenario_id="00",
        seed=0,
        variant=Variant({"size": Choice(value=1)}),
        repo=REPO_ROOT,
        private={},
        resources=lambda name: b"",
    )
    assert ctx.stack_healthy()
    status = ctx.fraudlab("status", check=False)
    assert "serving" in status.stdout and status.returncode in (0, 1)

    txns = read_raw(stack.settings, "transactions")
    future = txns[txns["event_timestamp"] >= read_clock(stack.settings)].head(12)
    assert not any(fallbacks(stack, future.head(4), "ctx-before"))

    before = serving_pid(stack.settings)
    with captured() as log:  # what the engine does around inject: nothing reaches the terminal
        ctx.restart_serving(feature_timeout_ms=0.0)
    assert "serving" in log.getvalue()
    assert serving_pid(stack.settings) != before
    # the first read trips the slow-store guard; from then on every lookup misses its deadline
    assert any(fallbacks(stack, future.iloc[4:8], "ctx-broken"))

    with captured():
        ctx.restart_serving()
    assert ctx.stack_healthy()
    assert not any(fallbacks(stack, future.iloc[8:12], "ctx-after"))
