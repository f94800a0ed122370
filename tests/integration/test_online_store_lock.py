"""A locked online store costs a request its lookup budget, never more, and never readiness.

Another process holds SQLite's exclusive lock on the stack's online store while requests arrive
at a modest rate and ``/readyz`` is polled. Before the fix, each request's feature read waited
Python's default busy timeout (5 s) on the event loop: requests took seconds, and ``/readyz``
queued behind them (``fraudlab status``: serving down).

The stack keeps its online store in WAL mode, where a writer's lock does not keep readers out
(measured: no request noticed a held ``BEGIN EXCLUSIVE``). The test therefore switches the file
to SQLite's rollback journal first — the mode of a store created by Feast's own CLI, and the
one in which a writer does lock readers out — and back to WAL afterwards.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import numpy as np
import pytest

from monitoring.sources import read_log
from pipelines.data import REQUEST_COLUMNS, read_clock, read_raw
from traffic.simulator import payload

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOLD_S = 8.0  # how long the other process holds the lock
BASELINE_S = 3.0  # the same load on the unlocked store, first
SENDERS = 4  # concurrent clients, each ~10 requests a second: a modest ~40 rps in all
PAUSE_S = 0.1
# A fallback answers after the lookup budget. On top: the latency the same load sees on the
# unlocked store in this run (HTTP, transform, ONNX, and whatever else shares this 2-core box),
# plus 100 ms for the lock holder's and the pool's thread switches: generous, and still far
# under the 5 s per request (8 s at p99 under this load) a locked store cost before.
MARGIN_MS = 100.0

# Stop serving (it holds the file open), set the journal mode, start serving again.
SWITCH_JOURNAL = """
import sqlite3, sys
from control import stack
from foundation.settings import get_settings
settings = get_settings()
stack._stop(settings, "serving")
with sqlite3.connect(settings.feast_online_path) as db:
    mode = db.execute(f"PRAGMA journal_mode={sys.argv[1]}").fetchone()[0]
print("journal mode", mode)
sys.exit(0 if mode == sys.argv[1].lower() and stack._start_serving(settings) else 1)
"""

HOLD_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("ROLLBACK")
"""


def _switch_journal(stack, mode: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SWITCH_JOURNAL, mode],
        env=stack.env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"switching to {mode} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture
def rollback_journal(stack):
    _switch_journal(stack, "DELETE")
    try:
        yield
    finally:
        _switch_journal(stack, "WAL")


@dataclass
class Load:
    """What the clients saw: answers (sent at, latency ms, status, body), /readyz probes."""

    answers: list[tuple[float, float, int, dict]] = field(default_factory=list)
    probes: list[tuple[float, int | str, float]] = field(default_factory=list)

    def p99_ms(self) -> float:
        return float(np.percentile([a[1] for a in self.answers], 99))

    def probe_p99_ms(self) -> float:
        return float(np.percentile([p[2] for p in self.probes], 99))


def _send_load(stack, next_body, seconds: float) -> Load:
    """SENDERS clients scoring at a modest rate for ``seconds``, /readyz polled meanwhile."""
    load = Load()
    stop_at = time.monotonic() + seconds
    stop = threading.Event()

    def send() -> None:
        # one kept-alive connection per client: a new client per request costs this process
        # tens of milliseconds, which would be measured as serving's latency
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < stop_at:
                started = time.monotonic()
                try:
                    response = client.post(f"{stack.url}/score", json=next_body())
                    status, body = response.status_code, response.json()
                except httpx.HTTPError as exc:
                    status, body = 0, {"error": repr(exc)}
                load.answers.append((started, (time.monotonic() - started) * 1000, status, body))
                if status == 200:
                    stack.scored_ids.append(body["transaction_id"])  # the log holds these
                time.sleep(PAUSE_S)

    def probe() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    status: int | str = client.get(f"{stack.url}/readyz").status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                load.probes.append((started, status, (time.monotonic() - started) * 1000))
                time.sleep(0.1)

    prober = threading.Thread(target=probe)
    prober.start()
    senders = [threading.Thread(target=send) for _ in range(SENDERS)]
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join(timeout=seconds + 120)
    stop.set()
    prober.join(timeout=60)
    return load


def test_a_locked_online_store_falls_back_within_the_budget(stack, rollback_journal) -> None:
    settings = stack.settings
    budget_ms = settings.feature_timeout_ms
    txns = read_raw(settings, "transactions")
    future = txns[txns["event_timestamp"] >= read_clock(settings)].head(3000)
    bodies = iter(
        [
            # synthetic: scored and logged like any request, but no velocity state moves, so
            # the other tests sharing the stack find the store as they left it
            {**payload(tuple(row)), "transaction_id": f"lock-{i}", "synthetic": True}
            for i, row in enumerate(future[list(REQUEST_COLUMNS)].itertuples(index=False))
        ]
    )
    taking = threading.Lock()

    def next_body() -> dict:
        with taking:
            return next(bodies)

    # The same load on the unlocked store first: this shared 2-core box's own latency, measured
    # in this run, is what the locked run may add the budget and the margin to.
    baseline = _send_load(stack, next_body, BASELINE_S)
    assert all(not a[3]["fallback"] for a in baseline.answers), "fell back before the lock"

    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(settings.feast_online_path), str(HOLD_S)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        locked_at = time.monotonic()
        # on past the release, to see the store answer again
        locked = _send_load(stack, next_body, HOLD_S + 1.5)
        assert holder.wait(timeout=30) == 0, "the lock holder failed"
    finally:
        if holder.poll() is None:
            holder.kill()

    answers = locked.answers
    assert [a for a in answers if a[2] != 200] == [], "a request was not answered"
    bound = budget_ms + MARGIN_MS + baseline.p99_ms()
    assert locked.p99_ms() <= bound, (
        f"p99 {locked.p99_ms():.0f} ms (max {max(a[1] for a in answers):.0f} ms) with the store"
        f" locked, over {bound:.0f} ms: the {budget_ms:.0f} ms budget + {MARGIN_MS:.0f} ms +"
        f" the unlocked p99 of {baseline.p99_ms():.0f} ms"
    )
    probe_bound = 1000 + baseline.probe_p99_ms()
    bad_probes = [p for p in locked.probes if p[1] != 200 or p[2] > probe_bound]
    assert locked.probes and not bad_probes, f"/readyz failed or stalled: {bad_probes[:5]}"

    # the lock was real: every lookup made while it was surely held fell back, with a reason
    while_locked = [
        body
        for started, latency, _, body in answers
        if started > locked_at + 0.05 and started + latency / 1000 < locked_at + HOLD_S - 0.05
    ]
    assert len(while_locked) > 20
    assert all(b["fallback"] for b in while_locked), [b for b in while_locked if not b["fallback"]]
    reasons = Counter(b["fallback_reason"] for b in while_locked)
    assert set(reasons) <= {"timeout", "error:OperationalError"}, reasons
    # and once it was released, the store answered again (reads still under the deadline)
    after = [body for started, _, _, body in answers if started > locked_at + HOLD_S + 0.3]
    assert after and not all(b["fallback"] for b in after), after

    # every answered request is logged exactly once, as it was answered
    answered = {body["request_id"]: body for _, _, _, body in baseline.answers + answers}
    deadline = time.monotonic() + 30
    while True:
        logged = [
            r
            for r in read_log(
                settings.prediction_log_dir, include_fallback=True, include_synthetic=True
            )
            if r.request_id in answered
        ]
        if len(logged) >= len(answered) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    counts = Counter(r.request_id for r in logged)
    assert set(counts) == set(answered), f"{len(set(answered) - set(counts))} answers not logged"
    assert max(counts.values()) == 1, "a request was logged twice"
    for record in logged:
        body = answered[record.request_id]
        assert record.fallback == body["fallback"]
        assert record.fallback_reason == body["fallback_reason"]
        assert (record.fallback_reason is not None) == record.fallback
