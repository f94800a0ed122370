"""``fraudlab loadtest``: a bounded, headless Locust run against serving and its latency report.

Owns: sizing the load (users × per-user rate = target rate), sampling request bodies from valid
future transactions, running Locust as a child process with a hard time bound, and turning its
CSV statistics into a report: RPS, p50/p95/p99, error rate, and p99 against
``Settings.latency_budget_ms``.

Must not: send load anywhere but a loopback ``serving_base_url`` (this is a shared machine),
or run unbounded. Exit status fails only on errors (> 1 %): a missed latency budget is a
finding to report, not a broken run.

Measurement caveat: on a 2-core machine Locust itself takes 0.3-0.8 of a core at ~100 req/s
(FIELD-NOTES; measured here with FastHttpUser: 0.13-0.18 of a core at 50-100 req/s),
competing with the server it measures, so its numbers are pessimistic; the report prints
Locust's own CPU share so a reader can judge. Locust also keeps response times
at millisecond resolution, so percentiles under ~10 ms move in 1 ms steps.
"""

from __future__ import annotations

import csv
import ipaddress
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd
from rich.console import Console

from foundation.settings import Settings
from pipelines import data
from pipelines.data import REQUEST_COLUMNS
from traffic.simulator import payload

console = Console(highlight=False, soft_wrap=True)

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
PER_USER_RPS = 10.0  # a FastHttpUser keeps this pace as long as latency stays under 100 ms
N_PAYLOADS = 5_000
MAX_SECONDS = 600  # a typo must not turn into an hour of load on a shared machine
MAX_ERROR_RATE = 0.01


def _is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def write_payloads(settings: Settings, target: Path, n: int = N_PAYLOADS) -> int:
    """Sample ``n`` request bodies from transactions at or after the stack's clock.

    Future transactions are ones serving has not scored yet, by users the online store already
    knows, so the load exercises the same lookups as production traffic.
    """
    clock = data.read_clock(settings)
    txns = pd.read_parquet(
        settings.data_dir / "transactions.parquet", columns=list(REQUEST_COLUMNS)
    )
    # Users who sign up later than the last daily materialisation are unknown to the online
    # store until the next one, and serving rejects them: that is a finding for the simulator's
    # replay, not noise a load test should add to its error rate.
    users = pd.read_parquet(
        settings.data_dir / "users.parquet", columns=["user_id", "signup_timestamp"]
    )
    known = users.loc[users["signup_timestamp"] < clock.floor("D"), "user_id"]
    txns = txns.loc[txns["user_id"].isin(known)]
    future = txns.loc[txns["event_timestamp"] >= clock]
    if future.empty:  # the simulator replayed everything: recent history is still valid input
        future = txns.tail(n)
    sample = future.sample(n=min(n, len(future)), random_state=settings.seed)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w") as handle:
        for row in sample.itertuples(index=False, name=None):
            # synthetic: logged and scored like production, but left out by the monitors and
            # never pushed into a real card holder's velocity state
            handle.write(json.dumps({**payload(row), "synthetic": True}) + "\n")
    return len(sample)


def read_aggregate(stats_csv: Path) -> dict[str, float]:
    """The ``Aggregated`` row of Locust's ``<prefix>_stats.csv``."""
    with stats_csv.open() as handle:
        for row in csv.DictReader(handle):
            if row["Name"] == "Aggregated":
                return {
                    "requests": float(row["Request Count"]),
                    "failures": float(row["Failure Count"]),
                    "rps": float(row["Requests/s"]),
                    "p50": float(row["50%"]),
                    "p95": float(row["95%"]),
                    "p99": float(row["99%"]),
                    "max": float(row["Max Response Time"]),
                }
    raise ValueError(f"no Aggregated row in {stats_csv}")


def run(settings: Settings, rps: float, seconds: int) -> int:
    """Run Locust for ``seconds`` at ``rps``; print the report; non-zero if errors > 1 %."""
    url = settings.serving_base_url
    if not _is_loopback(url):
        console.print(
            f"[bold red]✗[/] refusing to load {url}: load tests only target loopback "
            "on this shared machine (set FRAUDLAB_SERVING_URL to a 127.0.0.1 address)"
        )
        return 2
    if rps <= 0 or seconds <= 0:
        console.print(
            "[bold red]✗[/] rps and seconds must be positive: "
            "`fraudlab loadtest --rps 100 --seconds 30`"
        )
        return 2
    seconds = min(seconds, MAX_SECONDS)
    workdir = settings.run_dir / "loadtest"
    payloads = workdir / "payloads.jsonl"
    try:
        n = write_payloads(settings, payloads)
    except FileNotFoundError as exc:
        console.print(f"[bold red]✗[/] {exc}")
        return 1
    users = max(1, math.ceil(rps / PER_USER_RPS))
    prefix = workdir / "locust"
    for old in workdir.glob("locust_*.csv"):
        old.unlink()
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        url,
        "--users",
        str(users),
        "--spawn-rate",
        str(users),
        "--run-time",
        f"{seconds}s",
        "--stop-timeout",
        "5",
        "--csv",
        str(prefix),
        "--only-summary",
        "--loglevel",
        "WARNING",
        "--payloads-file",
        str(payloads),
        "--user-rps",
        f"{rps / users:.6f}",
    ]
    console.print(
        f"[bold cyan]→[/] Locust: {users} users × {rps / users:.2f} req/s = "
        f"{rps:g} req/s for {seconds}s against {url} ({n:,} sampled transactions)"
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    log_path = workdir / "locust.log"
    try:
        with log_path.open("w") as log:
            proc = subprocess.run(
                command, stdout=log, stderr=subprocess.STDOUT, timeout=seconds + 60, check=False
            )
    except subprocess.TimeoutExpired:
        console.print(
            f"[bold red]✗[/] Locust did not stop within {seconds + 60}s; read {log_path}"
        )
        return 1
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    locust_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    stats_csv = Path(f"{prefix}_stats.csv")
    if not stats_csv.exists():
        console.print(
            f"[bold red]✗[/] Locust exited with {proc.returncode} and wrote no "
            f"statistics; read {log_path}"
        )
        return 1
    try:
        stats = read_aggregate(stats_csv)
    except ValueError as exc:
        console.print(f"[bold red]✗[/] {exc}; read {log_path}")
        return 1
    if stats["requests"] == 0:
        console.print(
            f"[bold red]✗[/] no request completed; is serving up? `fraudlab status`; "
            f"Locust log: {log_path}"
        )
        return 1
    error_rate = stats["failures"] / stats["requests"]
    budget = settings.latency_budget_ms
    console.print(
        f"requests   {stats['requests']:,.0f} in {seconds}s "
        f"({stats['rps']:.1f} req/s achieved, {rps:g} offered)"
    )
    console.print(
        f"latency    p50 {stats['p50']:.0f} ms  p95 {stats['p95']:.0f} ms  "
        f"p99 {stats['p99']:.0f} ms  max {stats['max']:.0f} ms"
    )
    console.print(f"errors     {stats['failures']:,.0f} ({error_rate:.2%})")
    console.print(
        f"locust cpu {locust_cpu:.1f} s over {wall:.1f} s = "
        f"{locust_cpu / wall:.2f} of a core, start-up included (the same 2 cores as serving)"
    )
    passed = stats["p99"] <= budget and error_rate <= MAX_ERROR_RATE
    # Failed requests are often fast (connection refused): their latency proves nothing.
    caveat = " - not a measurement: too many errors" if error_rate > MAX_ERROR_RATE else ""
    console.print(
        f"{'[green]PASS[/]' if passed else '[red]FAIL[/]'} p99 {stats['p99']:.0f} ms vs budget "
        f"{budget:g} ms (FRAUDLAB_LATENCY_BUDGET_MS){caveat}"
    )
    if error_rate > MAX_ERROR_RATE:
        console.print(
            f"[bold red]✗[/] error rate {error_rate:.2%} > {MAX_ERROR_RATE:.0%}: "
            f"see {prefix}_failures.csv and `fraudlab logs serving`"
        )
        return 1
    return 0
