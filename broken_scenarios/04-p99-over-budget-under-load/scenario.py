"""Serving's latency regressed: p99 far over budget under load (the seed picks why).

inject: first measures a baseline probe on the healthy stack — a bounded synthetic load
(``synthetic: true``: logged, left out of the quality monitors, never a card holder's velocity)
of ``PROBE_RPS`` requests a second for ``PROBE_S`` seconds, open loop, built from upcoming
transactions; p50/p99 of the prediction log's ``latency_ms`` (time in the scorer) for those
requests, and the client's view too. Then one of:

- ``threads``: live override ``ort_threads=8`` (an onnxruntime intra-op pool of 8 threads, "as
  many as a production host has cores"), and serving restarted: onnxruntime splits even a
  one-row tree ensemble over its spinning pool, which fights the event loop, the feature store
  and the load for two shared cores on every inference. ``fraudlab config`` lists them;
  serving's start-up line states them.
- ``registry_check``: a serving release whose scorer asks MLflow for the champion alias on every
  request (``self.champion.check()`` on the request path, "so a promotion takes effect at
  once"): a synchronous HTTP round trip to the registry per request, on the event loop, where a
  background poller already does it every ``reload_interval_s``.
- ``uncached_feature_service``: a serving release whose online-feature reader fetches the
  model's feature service from the Feast registry on every lookup, uncached ("a re-applied
  service is served at once, without a restart"): the registry is read and parsed per request,
  inside the feature-lookup stage.

verify (outcomes): the same probe again; passes when the probe's p99 is back within
``P99_TOLERANCE`` × the baseline probe's p99 (or within the latency budget as it was at break
time: raising the budget changes nothing) and its median within ``P50_TOLERANCE`` × the
baseline's — the median is the fault's signature: every variant moves the whole distribution,
which load noise does not. A probe that fails with its median near the baseline's is repeated
once (noise on a shared machine only ever adds latency, and mostly to the tail). Any fix that
removes the cause passes.

reset: nothing beyond the baseline, which restores the overrides and the release and restarts
serving.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from lab import Check, ScenarioContext
from lab.context import edit_once as _replace

PROBE_RPS = 40.0
PROBE_S = 12.0
P99_TOLERANCE = 2.5
P50_TOLERANCE = 2.0
P50_SLACK_MS = 0.5  # a sub-millisecond median may double from noise alone
ATTEMPTS = 2
# A busy machine moves the tail, hardly the median: a probe whose median is within this ratio of
# the baseline's may be measured again before it counts as a failure.
NOISE_P50_RATIO = 3.0
# An intra-op pool sized for a production host, here shared with the event loop, the feature
# store and the load. 2 intra + 2 inter-op threads (the first choice) was marginal on a quiet
# default world: p99 x2.8-3.0 of the baseline probe, and once verify passed with no fix; 8
# intra-op threads measured p99 x8.8-9.5 (27-30 ms, over the budget) in two breaks. 8 intra +
# 8 inter-op saturate serving outright: a probe then outlasts verify's minute.
THREADS = {"ort_threads": 8}
SCORER = "serving/scorer.py"
FEATURES = "serving/online_features.py"


# --- the releases two variants deploy ---------------------------------------------------------


def _registry_check(source: str) -> str:
    return _replace(
        source,
        "        model = self.champion.current  # one read: this request is scored by one version\n",
        "        # Score with the champion as the registry has it now: a promotion or a rollback\n"
        "        # takes effect on the next request instead of up to reload_interval_s later.\n"
        "        self.champion.check()\n"
        "        model = self.champion.current  # one read: this request is scored by one version\n",
        SCORER,
    )


def _uncached_feature_service(source: str) -> str:
    return _replace(
        source,
        "    def service(self, name: str) -> FeatureService:\n"
        '        """The named feature service, fetched from the registry once."""\n'
        "        found = self._services.get(name)\n"
        "        if found is None:\n"
        "            found = self._services[name] = self.store.get_feature_service(name)\n"
        "        return found\n",
        "    def service(self, name: str) -> FeatureService:\n"
        '        """The named feature service as the registry has it now: a service re-applied'
        " by\n"
        '        `make features` is served at once, without a restart of serving."""\n'
        "        return self.store.get_feature_service(name, allow_cache=False)\n",
        FEATURES,
    )


RELEASES = {
    "registry_check": (SCORER, _registry_check),
    "uncached_feature_service": (FEATURES, _uncached_feature_service),
}


def release_changes(cause: str, read: Any) -> dict[str, str]:
    """``{path: new text}`` the variant's release ships (``read(path)`` gives today's text);
    empty for the configuration variant. Tests check every variant still applies."""
    if cause not in RELEASES:
        return {}
    path, change = RELEASES[cause]
    return {path: change(read(path))}


# --- the probe ----------------------------------------------------------------------------------


def _bodies(ctx: ScenarioContext) -> list[bytes]:
    path = ctx.work_dir / "requests.jsonl"
    if not path.exists():
        ctx.write_synthetic_requests(path, int(PROBE_RPS * PROBE_S) + 200)
    return [line.encode() for line in path.read_text().splitlines() if line.strip()]


def _percentile(values: list[float], q: float) -> float | None:
    import numpy as np

    return float(np.percentile(values, q)) if values else None


def probe(ctx: ScenarioContext) -> dict[str, Any]:
    """A bounded synthetic load on serving: p50/p99 from the prediction log and the client."""
    bodies = _bodies(ctx)
    ctx.score_closed_loop(bodies[-100:], 1, 1.0)  # warm connections and caches
    started = datetime.now(UTC)
    result = ctx.score_open_loop(bodies, PROBE_RPS, PROBE_S)
    ended = datetime.now(UTC)
    time.sleep(0.5)  # serving's background thread flushes the log every 0.1 s
    latencies = [
        float(r.latency_ms)
        for r in ctx.prediction_log(
            logged_since=started,
            include_fallback=True,
            include_synthetic=True,
        )
        if r.synthetic
        and r.latency_ms is not None
        and datetime.fromisoformat(r.logged_at) <= ended + timedelta(seconds=1)
    ]
    return {
        "at": started.isoformat(timespec="seconds"),
        "n": len(latencies),
        "errors": result.errors,
        "log_p50_ms": _percentile(latencies, 50),
        "log_p99_ms": _percentile(latencies, 99),
        "client_p50_ms": result.pct_ms(50) if result.n else None,
        "client_p99_ms": result.pct_ms(99) if result.n else None,
    }


def judge(baseline: dict[str, Any], now: dict[str, Any], budget_ms: float) -> tuple[bool, bool]:
    """(p99 back, median back) of probe ``now`` against the ``baseline`` probe."""
    if not now["n"] or now["log_p99_ms"] is None:
        return False, False
    p99_ok = now["log_p99_ms"] <= max(P99_TOLERANCE * baseline["log_p99_ms"], budget_ms)
    p50_ok = now["log_p50_ms"] <= P50_TOLERANCE * baseline["log_p50_ms"] + P50_SLACK_MS
    return p99_ok, p50_ok


def _describe(p: dict[str, Any], baseline: dict[str, Any] | None = None) -> str:
    def ms(value: float | None) -> str:
        return "–" if value is None else f"{value:.1f}"

    text = (
        f"{p['n']} requests, log p50 {ms(p['log_p50_ms'])} / p99 {ms(p['log_p99_ms'])} ms,"
        f" client p50 {ms(p['client_p50_ms'])} / p99 {ms(p['client_p99_ms'])} ms,"
        f" {p['errors']} errors"
    )
    if baseline and p["log_p50_ms"] and p["log_p99_ms"]:
        text += (
            f" (× {p['log_p50_ms'] / baseline['log_p50_ms']:.1f} p50,"
            f" × {p['log_p99_ms'] / baseline['log_p99_ms']:.1f} p99 vs the baseline probe)"
        )
    return text


# --- the verbs ----------------------------------------------------------------------------------


def inject(ctx: ScenarioContext) -> None:
    if ctx.private.get("injected"):
        return
    ctx.private["ticket"] = f"OPS-{ctx.rng.randint(3000, 3999)}"
    ctx.private["reporter"] = ctx.rng.choice(["Lena (Payments SRE)", "Tomás (Checkout team)"])
    ctx.private["budget_ms"] = ctx.settings.reloaded().latency_budget_ms
    ctx.private["budget"] = f"{ctx.private['budget_ms']:g}"
    baseline = probe(ctx)
    if not baseline["n"]:
        raise RuntimeError(f"the baseline probe got no logged answers: {baseline}")
    ctx.private["baseline"] = baseline
    ctx.private["baseline_p50"] = f"{baseline['log_p50_ms']:.1f}"  # for the interviewer notes
    ctx.private["baseline_p99"] = f"{baseline['log_p99_ms']:.1f}"
    ctx.log(f"baseline probe: {_describe(baseline)}")
    cause = str(ctx.variant["cause"])
    if cause == "threads":
        ctx.set_config(**THREADS)
        ctx.restart_serving()
    else:
        ctx.deploy(release_changes(cause, ctx.read_stack_code))
    ctx.private["injected"] = True


def verify(ctx: ScenarioContext) -> list[Check]:
    baseline = ctx.private.get("baseline")
    if not baseline:
        return [Check("a baseline measurement exists", False, "inject did not run to the end")]
    budget = float(ctx.private["budget_ms"])
    attempts = []
    for _ in range(ATTEMPTS):
        now = probe(ctx)
        attempts.append(now)
        p99_ok, p50_ok = judge(baseline, now, budget)
        if p99_ok and p50_ok and not now["errors"]:
            break
        if (now["log_p50_ms"] or 0.0) > NOISE_P50_RATIO * baseline["log_p50_ms"]:
            break  # the whole distribution moved: not something to measure again
    detail = (
        f"baseline: {_describe(baseline)}; "
        + "; ".join(f"probe {i + 1}: {_describe(p, baseline)}" for i, p in enumerate(attempts))
        + f"; budget at break {budget:g} ms"
    )
    return [
        Check(
            "under a steady synthetic load every request is answered",
            not now["errors"] and now["n"] > 0,
            detail,
        ),
        Check(
            "under a steady synthetic load, p99 scoring time is back near its level before the"
            " incident",
            p99_ok,
            detail,
        ),
        Check(
            "under the same load, the median scoring time is back near its level before the"
            " incident",
            p50_ok,
            detail,
        ),
    ]


def reset(ctx: ScenarioContext) -> None:
    """The baseline restore puts overrides and release back and restarts serving."""


# --- for the contract tests ---------------------------------------------------------------------


def symptom(ctx: ScenarioContext) -> list[Check]:
    """`make loadtest` then `make monitor M=latency` alert; the probe regressed clearly."""
    baseline = ctx.private["baseline"]
    now = probe(ctx)
    ctx.log(f"broken probe: {_describe(now, baseline)}")
    ctx.fraudlab("loadtest", "--rps", str(int(PROBE_RPS)), "--seconds", "10", check=False)
    ctx.fraudlab("monitor", "latency", check=False)
    reports = sorted(ctx.settings.monitoring_dir.glob("*/latency.json"))
    report = json.loads(reports[-1].read_text()) if reports else {}
    p50_ratio = (now["log_p50_ms"] or 0.0) / baseline["log_p50_ms"]
    p99_ratio = (now["log_p99_ms"] or 0.0) / baseline["log_p99_ms"]
    return [
        Check(
            "`make monitor M=latency` alerts after `make loadtest`",
            report.get("status") == "alert",
            report.get("reason", "no latency report"),
        ),
        Check(
            "the regression is unambiguous: median ≥ 4× and p99 ≥ 2.5× the baseline probe",
            p50_ratio >= 4.0 and p99_ratio >= 2.5,
            _describe(now, baseline),
        ),
    ]


def reference_fix(ctx: ScenarioContext) -> None:
    if ctx.variant["cause"] == "threads":
        ctx.fraudlab("config", "unset", *THREADS)
        ctx.fraudlab("restart", "serving")
    else:
        ctx.fraudlab("deploy")


def wrong_fix(ctx: ScenarioContext) -> None:
    """Raise the budget so the alert stops, and restart serving as it is."""
    ctx.fraudlab("config", "set", "latency_budget_ms=50")
    ctx.fraudlab("restart", "serving")
