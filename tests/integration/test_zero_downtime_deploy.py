"""`fraudlab deploy` under traffic: a new release with its own id, switched to without a single
client error, and every answered request logged exactly once by the release that answered it.

Serving's supervisor (``control.serve``) holds the port; a deploy starts the new release's
worker on the same socket, switches when that worker answers /readyz itself, and drains the old
one. Before it, a deploy stopped serving and started it again: requests in between were refused
(3 client errors during one redeploy at 5 req/s).

Traffic is synthetic (``"synthetic": true``, transaction ids "dep-…"): no card holder's velocity
moves. The file name keeps it after the files that expect the first release.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx
import pytest

from control import releases
from monitoring import sources
from pipelines.data import read_clock, read_raw
from tests.integration.test_embedded_stack import payload

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RPS = 20.0
AFTER_SWITCH_S = 5.0  # traffic goes on this long after the deploy returned


class Traffic(threading.Thread):
    """One keep-alive client sending ``RPS`` requests a second, as a paced client does."""

    def __init__(self, url: str, bodies: list[dict]) -> None:
        super().__init__(daemon=True)
        self.url, self.bodies = url, bodies
        self.stop = threading.Event()
        self.answered: list[tuple[int, str]] = []  # (request number, request id)
        self.errors: list[str] = []
        self.retried: list[str] = []  # reset before any response, sent again once

    def run(self) -> None:
        started = time.monotonic()
        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            for i, body in enumerate(self.bodies):
                if self.stop.is_set():
                    return
                try:
                    try:
                        response = client.post("/score", json=body)
                    except (httpx.ReadError, httpx.RemoteProtocolError) as exc:
                        # A keep-alive connection the draining worker closed as this request
                        # went out: reset before any response byte. A pooled HTTP client sends
                        # it again on a fresh connection; that it was not scored twice is
                        # checked on the log (each transaction logged once).
                        self.retried.append(f"request {i}: {type(exc).__name__}: {exc}")
                        response = client.post("/score", json=body)
                except httpx.HTTPError as exc:
                    self.errors.append(f"request {i}: {type(exc).__name__}: {exc}")
                else:
                    if response.status_code == 200:
                        self.answered.append((i, response.json()["request_id"]))
                    else:
                        self.errors.append(f"request {i}: {response.status_code} {response.text}")
                time.sleep(max(0.0, started + (i + 1) / RPS - time.monotonic()))


def _bodies(stack, n: int) -> list[dict]:
    txns = read_raw(stack.settings, "transactions")
    future = txns[txns["event_timestamp"] >= read_clock(stack.settings)]
    rows = future.iloc[[k % len(future) for k in range(n)]]
    return [
        {**payload(row, prefix="dep"), "transaction_id": f"dep-{k}", "synthetic": True}
        for k, (_, row) in enumerate(rows.iterrows())
    ]


def _logged(settings, ids: set[str], n: int) -> list:
    deadline = time.monotonic() + 15
    while True:
        records = [
            r
            for r in sources.read_log(
                settings.prediction_log_dir, include_fallback=True, include_synthetic=True
            )
            if r.request_id in ids
        ]
        if len(records) >= n or time.monotonic() > deadline:
            return records
        time.sleep(0.3)


def test_a_deploy_under_traffic_drops_nothing_and_logs_each_answer_once(stack) -> None:
    before = releases.current(stack.settings)
    assert before is not None
    traffic = Traffic(stack.url, _bodies(stack, 4000))
    traffic.start()
    time.sleep(3)
    started = time.monotonic()
    deploy = stack.cli("deploy", timeout=600)
    took = time.monotonic() - started
    time.sleep(AFTER_SWITCH_S)
    traffic.stop.set()
    traffic.join(30)
    print(f"\nfraudlab deploy under {RPS:g} req/s: {took:.1f}s, {len(traffic.answered)} answered")
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr

    after = releases.current(stack.settings)
    assert after is not None and after.id != before.id  # the same tree: still a new release
    assert after.commit is not None  # built from this checkout: it knows its commit
    assert after.id in deploy.stderr and "switched" in deploy.stderr, deploy.stderr

    assert traffic.errors == [], traffic.errors[:10]
    ids = {request_id for _, request_id in traffic.answered}
    assert len(ids) == len(traffic.answered) > RPS * (took + AFTER_SWITCH_S) * 0.5
    records = _logged(stack.settings, ids, len(ids))
    assert Counter(Counter(r.request_id for r in records).values()) == {1: len(ids)}
    # nothing scored twice, a request sent again after a reset included
    sent = {body["transaction_id"] for body in traffic.bodies}
    mine = [
        r.transaction_id
        for r in sources.read_log(
            stack.settings.prediction_log_dir, include_fallback=True, include_synthetic=True
        )
        if r.transaction_id in sent
    ]
    assert Counter(Counter(mine).values()) == {1: len(ids)}, traffic.retried
    print(f"sent again after a reset: {traffic.retried or 'none'}")
    # in request order, the old release answered up to the switch and the new one after it
    by_id = {r.request_id: r.release for r in records}
    served = [by_id[request_id] for _, request_id in sorted(traffic.answered)]
    switch = served.index(after.id)
    assert set(served[:switch]) == {before.id} and set(served[switch:]) == {after.id}
    assert len(served) - switch >= RPS * AFTER_SWITCH_S * 0.5

    diff = stack.cli("deploy", "--diff")
    assert diff.returncode == 0, diff.stdout + diff.stderr
    assert diff.stdout.startswith(f"serving runs {after.provenance()}\n"), diff.stdout[:500]
