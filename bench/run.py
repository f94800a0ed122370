"""``make bench``: every performance target of the spec, measured side by side in one run.

Needs the embedded stack up (``make up``): it measures the running service and the champion
model. Benchmark requests are real requests marked ``synthetic``: serving scores and logs them
(the latency monitor judges them with the load tests) and never updates a card holder's
velocity with them. The bare reference server the throughput is compared with logs into a
scratch home of its own (``scratch_home``). Results print as a table and land in
``<home>/bench/bench-<time>.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from bench import load
from foundation.settings import REPO_ROOT, Settings

console = Console(highlight=False)

STANDARD_RPS = 50.0  # the benchmark's standard load for the latency budget
ONNX_BUDGET_US = 100.0
THROUGHPUT_TARGET = 0.80  # BentoML ≥ 80 % of the bare reference


@dataclass
class Report:
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)
    data: dict = field(default_factory=dict)

    def add(self, name: str, measured: str, target: str, verdict: bool | None) -> None:
        mark = "—" if verdict is None else ("PASS" if verdict else "FAIL")
        self.rows.append((name, measured, target, mark))


def _timeit(fn, n: int) -> np.ndarray:
    out = np.empty(n)
    for i in range(n):
        started = time.perf_counter()
        fn(i)
        out[i] = time.perf_counter() - started
    return out


def bench_generator(report: Report) -> None:
    from pipelines.generate import WorldConfig, generate

    # ≈ 1M transactions over 74 days (the world this benchmark has always generated)
    config = WorldConfig.with_defaults(seed=1, n_users=40_000, history_days=60, future_days=14)
    started = time.perf_counter()
    n = len(generate(config).transactions)
    seconds = time.perf_counter() - started
    report.data["generator"] = {"rows": n, "seconds": seconds, "rows_per_s": n / seconds}
    report.add(
        "generator: 1M transactions",
        f"{n:,} rows in {seconds:.1f}s ({n / seconds:,.0f} rows/s)",
        "≤ 10 s",
        seconds <= 10,
    )


def bench_model(settings: Settings, report: Report, cache: Path) -> None:
    import pandas as pd

    from model import export, registry

    bundle = registry.load_alias(settings, cache)
    x = pd.read_parquet(bundle.directory / "reference.parquet")[bundle.feature_order]
    rows = x.sample(2000, random_state=0, replace=len(x) < 2000).to_numpy(np.float32)
    session = export.onnx_session(bundle.onnx_path.read_bytes(), threads=settings.ort_threads)
    booster, calibration = export.load_native(bundle.directory, bundle.spec)
    one = [rows[i : i + 1] for i in range(len(rows))]
    one64 = [r.astype(np.float64) for r in one]
    onnx_t, native_t = [], []
    for _ in range(2):  # alternate the two, so both see the same machine
        onnx_t.append(_timeit(lambda i: export.onnx_scores(session, one[i]), len(one)))
        native_t.append(
            _timeit(lambda i: export.native_scores(booster, calibration, one64[i]), len(one))
        )
    onnx_us, native_us = np.concatenate(onnx_t) * 1e6, np.concatenate(native_t) * 1e6
    p99_onnx, p99_native = np.percentile(onnx_us, 99), np.percentile(native_us, 99)
    report.data["model"] = {
        "onnx_p50_us": float(np.median(onnx_us)),
        "onnx_p99_us": p99_onnx,
        "native_p50_us": float(np.median(native_us)),
        "native_p99_us": p99_native,
        "version": bundle.version,
    }
    report.add(
        "ONNX single row (champion)",
        f"p50 {np.median(onnx_us):.0f} µs, p99 {p99_onnx:.0f} µs",
        "p99 ≤ 100 µs",
        p99_onnx <= ONNX_BUDGET_US,
    )
    report.add(
        "  vs native LightGBM (+ calibration)",
        f"p50 {np.median(native_us):.0f} µs, p99 {p99_native:.0f} µs "
        f"→ ONNX {np.median(native_us) / np.median(onnx_us):.1f}× faster",
        "ratio",
        None,
    )


def bench_feature_store(settings: Settings, report: Report, entities: list[dict]) -> None:
    import sqlite3

    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    from features.store import open_store

    store = open_store(settings)
    service = store.get_feature_service(settings.feature_service)
    views = [(p.name, p.join_key_map or None) for p in service.feature_view_projections]
    fvs = {fv.name: fv for fv in store.list_feature_views()}
    version = store.config.entity_key_serialization_version
    conn = sqlite3.connect(settings.feast_online_path)

    def raw(i: int) -> None:
        entity = entities[i]
        for name, _ in views:
            keys = fvs[name].join_keys
            key = EntityKey(
                join_keys=keys, entity_values=[Value(int64_val=entity[k]) for k in keys]
            )
            conn.execute(
                f"SELECT feature_name, value FROM {store.project}_{name} WHERE entity_key = ?",
                (serialize_entity_key(key, version),),
            ).fetchall()

    def feast(i: int) -> None:
        store.get_online_features(features=service, entity_rows=[entities[i]]).to_dict()

    n = len(entities)
    feast(0), raw(0)
    f_t, r_t = [], []
    for _ in range(2):
        f_t.append(_timeit(feast, n))
        r_t.append(_timeit(raw, n))
    f_us, r_us = np.concatenate(f_t) * 1e6, np.concatenate(r_t) * 1e6
    report.data["feature_store"] = {
        "feast_p50_us": float(np.median(f_us)),
        "feast_p99_us": float(np.percentile(f_us, 99)),
        "raw_sqlite_p50_us": float(np.median(r_us)),
        "views": len(views),
    }
    report.add(
        f"Feast online read ({len(views)} views)",
        f"p50 {np.median(f_us):.0f} µs, p99 {np.percentile(f_us, 99):.0f} µs; raw SQLite "
        f"of the same rows p50 {np.median(r_us):.0f} µs "
        f"(Feast ×{np.median(f_us) / np.median(r_us):.0f})",
        "ratio",
        None,
    )


def _bodies(settings: Settings) -> list[bytes]:
    from traffic.loadtest import write_payloads

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "payloads.jsonl"
        write_payloads(settings, path, n=3000)
        return [line.encode() for line in path.read_text().splitlines() if line.strip()]


def bench_latency(
    settings: Settings, report: Report, bodies: list[bytes], seconds: float, rps: float
) -> None:
    url = settings.serving_base_url
    load.closed_loop(url, "/score", bodies[:200], 1, 2.0)  # warm
    result = load.open_loop(url, "/score", bodies, rps, seconds)
    p99 = result.pct_ms(99)
    report.data["latency"] = {
        "rps_offered": rps,
        "rps": result.rps,
        "p50_ms": result.pct_ms(50),
        "p95_ms": result.pct_ms(95),
        "p99_ms": p99,
        "errors": result.errors,
        "n": result.n,
    }
    report.add(
        f"serving end to end at {rps:.0f} req/s ({seconds:.0f}s, open loop)",
        f"p50 {result.pct_ms(50):.1f} ms, p95 {result.pct_ms(95):.1f} ms, p99 {p99:.1f} "
        f"ms, {result.errors} errors",
        f"p99 ≤ {settings.latency_budget_ms:.0f} ms",
        p99 <= settings.latency_budget_ms and result.errors == 0,
    )


def scratch_home(settings: Settings, directory: Path) -> Path:
    """A home for the reference server in ``directory``: every entry of the stack's home (data,
    feature store, model cache) through a link, except the request logs, which are its own.

    The reference does the same work per request as serving, writing its records included, but
    its answers are no serving release's: in the stack's log they would pass for the release
    serving now (the newest line names it) and cut short the window every monitor judges.
    """
    home = settings.home.resolve()
    log_dir = settings.prediction_log_dir
    for entry in home.iterdir():
        if entry != log_dir:
            (directory / entry.name).symlink_to(entry)
    return directory


def _start_reference(settings: Settings, port: int, home: Path) -> subprocess.Popen:
    env = {**os.environ, "FRAUDLAB_HOME": str(home)}
    env.pop("FRAUDLAB_RELEASE_ID", None)  # it runs the working tree, not a release
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.reference_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=REPO_ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"reference server exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise RuntimeError("reference server did not become ready within 120 s")


def bench_throughput(
    settings: Settings, report: Report, bodies: list[bytes], seconds: float
) -> None:
    port = load.free_port()
    home = scratch_home(settings, Path(tempfile.mkdtemp(prefix="fraudlab-bench-reference-")))
    reference = _start_reference(settings, port, home)
    try:
        urls = {"bentoml": settings.serving_base_url, "reference": f"http://127.0.0.1:{port}"}
        for url in urls.values():
            load.closed_loop(url, "/score", bodies[:300], 2, 2.0)  # warm both
        runs: dict[str, list[load.Result]] = {name: [] for name in urls}
        for _ in range(2):  # alternate: B, R, B, R
            for name, url in urls.items():
                runs[name].append(load.closed_loop(url, "/score", bodies, 4, seconds / 2))
    finally:
        os.killpg(reference.pid, signal.SIGTERM)
        reference.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)  # the links and the reference's own log
    rps = {name: sum(r.n for r in rs) / sum(r.seconds for r in rs) for name, rs in runs.items()}
    ratio = rps["bentoml"] / rps["reference"]
    report.data["throughput"] = {**{f"{k}_rps": v for k, v in rps.items()}, "ratio": ratio}
    report.add(
        "throughput, BentoML vs bare uvicorn reference (4 clients)",
        f"{rps['bentoml']:.0f} vs {rps['reference']:.0f} req/s = {ratio:.0%}",
        f"≥ {THROUGHPUT_TARGET:.0%}",
        ratio >= THROUGHPUT_TARGET,
    )


def run(settings: Settings, seconds: float = 20.0, rps: float = STANDARD_RPS) -> int:
    """Run every benchmark; exit 0 when they ran (a missed target is a finding, not a crash)."""
    try:
        httpx.get(f"{settings.serving_base_url}/readyz", timeout=3).raise_for_status()
    except httpx.HTTPError:
        console.print(
            f"[red]serving does not answer at {settings.serving_base_url}[/]: run `make up` first"
        )
        return 1
    report = Report()
    steps = [
        ("generator", lambda: bench_generator(report)),
        ("model", lambda: bench_model(settings, report, Path(tmp))),
        ("feature store", lambda: bench_feature_store(settings, report, entities)),
        ("latency", lambda: bench_latency(settings, report, bodies, seconds, rps)),
        ("throughput", lambda: bench_throughput(settings, report, bodies, seconds)),
    ]
    bodies = _bodies(settings)
    entities = [
        {k: json.loads(b)[k] for k in ("user_id", "merchant_id", "device_id")}
        for b in bodies[:1000]
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for name, step in steps:
            console.print(f"→ {name} …")
            step()
    table = Table(title=f"fraudlab bench ({os.cpu_count()} cores, load {os.getloadavg()[0]:.2f})")
    for column in ("benchmark", "measured", "target", "verdict"):
        table.add_column(column)
    for row in report.rows:
        table.add_row(*row)
    console.print(table)
    out = settings.home.resolve() / "bench" / f"bench-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report.data, indent=2, default=float))
    console.print(f"results: {out}")
    return 0
