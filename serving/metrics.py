"""Serving's own Prometheus metrics (BentoML adds its HTTP metrics next to them on /metrics).

Owns: metric names, labels and buckets. Must not: decide anything from them.

Metrics are created on first use, never at import: BentoML sets ``PROMETHEUS_MULTIPROC_DIR`` in
the worker after it imports the service module, and ``prometheus_client`` fixes its value
storage when it is first imported. Created too early, our metrics would live in a private
registry that /metrics (a multiprocess collector over that directory) never shows. Feast also
sets the variable process-wide when imported; BentoML's value wins because it is set first
and Feast only fills it in when it is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

# Sub-millisecond resolution: the whole request budget is 10 ms.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)
SCORE_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)


@dataclass(frozen=True)
class ServingMetrics:
    requests: Any
    rejected: Any
    fallbacks: Any
    feature_latency: Any
    inference_latency: Any
    scores: Any
    model_info: Any
    reloads: Any
    log_records: Any
    pushes: Any


@lru_cache(maxsize=1)
def serving_metrics() -> ServingMetrics:
    """The process's metrics (created on the first call, inside the BentoML worker)."""
    from prometheus_client import Counter, Gauge, Histogram

    return ServingMetrics(
        requests=Counter(
            "fraudlab_scored_requests", "Scored transactions by decision.", ["decision"]
        ),
        rejected=Counter(
            "fraudlab_rejected_requests", "Requests refused with a 4xx, by reason.", ["reason"]
        ),
        fallbacks=Counter(
            "fraudlab_feature_fallbacks",
            "Requests scored without stored features, by reason.",
            ["reason"],
        ),
        feature_latency=Histogram(
            "fraudlab_feature_lookup_seconds",
            "Online feature lookup time (until the answer or the timeout).",
            buckets=LATENCY_BUCKETS,
        ),
        inference_latency=Histogram(
            "fraudlab_model_inference_seconds",
            "Transform plus onnxruntime time for one transaction.",
            buckets=LATENCY_BUCKETS,
        ),
        scores=Histogram(
            "fraudlab_score", "Calibrated fraud probability served.", buckets=SCORE_BUCKETS
        ),
        # 1 for the version serving now, 0 for versions served before in this process.
        model_info=Gauge(
            "fraudlab_model_info",
            "Model version being served.",
            ["model_name", "version", "transform_version"],
            multiprocess_mode="livemax",
        ),
        reloads=Counter(
            "fraudlab_model_reloads", "Champion reload attempts by outcome.", ["outcome"]
        ),
        log_records=Counter(
            "fraudlab_prediction_log_records", "Prediction log records by outcome.", ["outcome"]
        ),
        pushes=Counter(
            "fraudlab_velocity_pushes", "Velocity rows pushed to Feast by outcome.", ["outcome"]
        ),
    )
