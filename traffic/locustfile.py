"""Locust user for ``fraudlab loadtest``: POST /score at a constant per-user rate.

Owns: what one simulated client does. Must not: decide the load (``traffic.loadtest`` sizes
users and rate and reads the results) or build payloads (they come pre-sampled from valid future
transactions in the file ``--payloads-file`` names, read once per Locust process).

Locust shares the 2 cores with serving (0.3-0.8 of a core per FIELD-NOTES, 0.13-0.18 measured
at 50-100 req/s with FastHttpUser), so keep the per-request work here minimal.

Run through ``fraudlab loadtest``; by hand::

    locust -f traffic/locustfile.py --headless -u 10 -r 10 -t 30s --host http://127.0.0.1:3000 \
        --payloads-file var/run/loadtest/payloads.jsonl --user-rps 10
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from locust import FastHttpUser, constant_throughput, events, task
from locust.env import Environment

PAYLOADS: list[dict[str, Any]] = []


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any) -> None:
    parser.add_argument(
        "--payloads-file", type=str, default="", help="JSON lines of /score bodies"
    )
    parser.add_argument("--user-rps", type=float, default=1.0, help="Requests per second per user")


@events.init.add_listener
def _load_payloads(environment: Environment, **_kwargs: Any) -> None:
    # Read once per process, not per user: JSON parsing in the hot loop would be Locust's own
    # CPU, and on 2 cores that is CPU taken from the server being measured.
    path = Path(environment.parsed_options.payloads_file)
    if not path.is_file():
        raise SystemExit(f"payloads file {path} not found: run through `fraudlab loadtest`")
    PAYLOADS.extend(json.loads(line) for line in path.read_text().splitlines() if line)
    if not PAYLOADS:
        raise SystemExit(f"payloads file {path} is empty: regenerate with `fraudlab loadtest`")
    # Paced, not closed-loop: each user aims at a fixed rate, so the offered load does not drop
    # when the server slows down (a closed loop would hide a latency regression).
    Scorer.wait_time = constant_throughput(environment.parsed_options.user_rps)


class Scorer(FastHttpUser):
    """One client sending one transaction at a time at ``--user-rps``."""

    # Replaced at init by constant_throughput(--user-rps): the rate is known only then.
    wait_time = constant_throughput(1.0)

    @task
    def score(self) -> None:
        body = random.choice(PAYLOADS)
        with self.client.post("/score", json=body, name="/score", catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure(f"HTTP {resp.status_code}: {(resp.text or '')[:120]}")
            elif "score" not in (resp.json() or {}):
                resp.failure("response has no score")
