"""The fraud scoring service: ``FraudScorer``, a BentoML 1.4 service.

Owns: wiring the champion model (``serving.model``), online features with their fallback
(``serving.online_features``), the shared transform and the prediction sink
(``serving.prediction_log``) into the HTTP API, plus readiness and shutdown.
Must not: compute model inputs itself (``features.transforms.build_model_inputs`` does), or
train, register or promote models.

Start it from the repository root::

    bentoml serve serving.service:FraudScorer --host 127.0.0.1 --port $FRAUDLAB_SERVING_PORT

Give each stack its own ``BENTOML_HOME`` (e.g. ``$FRAUDLAB_HOME/bentoml``): ``bentoml serve``
empties ``$BENTOML_HOME/prometheus_multiproc_dir`` at start, so a second server sharing the
home silently takes over the first one's /metrics.

Start-up loads the champion (MLflow, else the cached last bundle) and opens the feature store
before the worker accepts requests; with neither a registry nor a cache the worker stops with a
message saying what to run, and BentoML restarts it until a champion appears (``/readyz`` stays
unready meanwhile).

Endpoints: ``POST /score`` (one transaction → score and decision), ``POST /reload`` (check the
champion alias now), BentoML's ``/livez``, ``/readyz`` (true once model and feature store are
loaded and the log writer runs) and ``/metrics``.

Per request: validate (pydantic; 4xx with the reason), look up stored features with a deadline
(on timeout or error score from the request alone — see ``serving.online_features`` for the
fallback), refuse unknown users and merchants with 422 (an unknown device is just a new
device), transform with the shared transform, put columns in the model's own feature order by
name, run onnxruntime, decide with the model's own threshold, and enqueue the log record and
the velocity push for the background thread. The response names the model version that scored.
"""

from __future__ import annotations

import atexit
import gc
import logging
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import bentoml
from starlette.responses import JSONResponse

from features.transforms import STORED_FEATURES, build_model_inputs, to_matrix
from fraudlab.settings import get_settings
from serving.http import InvalidRequestStatus
from serving.metrics import serving_metrics
from serving.model import ServedModel
from serving.schemas import ReloadResult, ScoreResult, Transaction

# A registry outage must cost a start-up or a reload check seconds, not the minutes MLflow's
# default retry schedule (7 retries, exponential backoff) would spend; the poller retries on its
# own schedule anyway, and start-up falls back to the cached bundle. Operators can override.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")

Decision = Literal["decline", "approve"]
DECISIONS: tuple[Decision, ...] = ("decline", "approve")
# The background thread's Feast push is ~20-50 ms of pure Python once a second. With Python's
# default 5 ms GIL switch interval a request arriving meanwhile waits up to 5 ms per hand-over;
# at 0.5 ms the request path gets it back sooner (one A/B on a busy box: p99 16 vs 23 ms).
sys.setswitchinterval(0.0005)

log = logging.getLogger("fraudlab.serving")
# BentoML's root logger passes warnings only; our start-up, reload and recovery lines are INFO.
log.setLevel(logging.INFO)


@bentoml.service(
    name="fraud_scorer",
    # The per-request access log costs CPU on every request and ~300 bytes of disk; serving's
    # own record of every request is the prediction log, and /metrics has the latencies.
    logging={"access": {"enabled": False}},
    # No trace exporter is configured, so per-request OpenTelemetry spans are pure overhead on
    # the hot path; the request-duration histogram (/metrics) and the prediction log remain.
    tracing={"excluded_urls": ["/score", "/readyz", "/livez", "/metrics"]},
    # One worker: the log file and the chaining of each user's velocity state live in one
    # process (two workers would interleave writes to one file and race on a user's velocity),
    # and two cores shared with the load generator leave no idle core for a second one.
    # Concurrency comes from the event loop: /score is async, its only blocking I/O (the feature
    # lookup) runs in a small thread pool with a deadline, and the CPU part (transform +
    # onnxruntime, ~0.3 ms measured alone) runs inline, saving the thread hop that a sync API
    # (BentoML's single-slot limiter, or `threads=N`) adds to every request.
    workers=1,
    traffic={"timeout": 10},
)
class FraudScorer:
    def __init__(self) -> None:
        from serving.model import Champion, load_champion
        from serving.online_features import OnlineFeatures
        from serving.prediction_log import PredictionSink

        self.settings = get_settings()
        self.metrics = serving_metrics()
        # Labelled children resolved once: .labels() takes a lock and a dict lookup per call.
        self._decided = {d: self.metrics.requests.labels(decision=d) for d in DECISIONS}
        started = time.perf_counter()
        self.features = OnlineFeatures(self.settings)
        model = load_champion(self.settings)
        # An unknown feature service fails start-up here; the first lookup's one-off costs
        # (registry parse, SQLite connection) are paid before the first request.
        self.features.warm_up(model.feature_service)
        self.champion = Champion(
            self.settings,
            model,
            validate=lambda candidate: self.features.service(candidate.feature_service),
            on_swap=self._publish_version,
        )
        self._publish_version(None, model)
        self.sink = PredictionSink(self.settings)
        self.champion.start_polling()
        atexit.register(self._close)  # a second line of defence if the shutdown hook is skipped
        # Start-up leaves ~1M long-lived objects (Feast, MLflow, onnxruntime, pandas). Freezing
        # them keeps every later garbage collection from walking them: a full pass over that
        # heap is a stall of tens of milliseconds in the middle of some request.
        gc.collect()
        gc.freeze()
        log.info(
            "serving model %s v%s (threshold %.4f, feature service %s) ready in %.1fs",
            model.bundle.name,
            model.version,
            model.threshold,
            model.feature_service,
            time.perf_counter() - started,
        )

    # --- health -----------------------------------------------------------------------------
    def __is_ready__(self) -> bool:
        return self.sink.alive()

    # --- API ----------------------------------------------------------------------------
    # output_spec is explicit because a refusal returns its own 422 response instead of raising:
    # BentoML logs a raised error with a full traceback at ERROR, and an unknown user is an
    # ordinary answer, not a server fault.
    @bentoml.api(route="/score", output_spec=ScoreResult)
    async def score(self, txn: Transaction, /) -> ScoreResult | JSONResponse:
        model = self.champion.current  # one read: this request is scored by one version
        when = txn.timestamp or datetime.now(UTC)
        event_ts = when.timestamp()
        entity = {
            "user_id": txn.user_id,
            "merchant_id": txn.merchant_id,
            "device_id": txn.device_id,
        }

        lookup = await self.features.lookup(model.feature_service, entity)
        self.metrics.feature_latency.observe(lookup.seconds)
        stored = lookup.values
        if stored is not None:
            if stored.get("signup_ts") is None:
                return self._reject(
                    "user_id",
                    txn.user_id,
                    "unknown_user",
                    "no profile in the feature store (a user who signed up"
                    " after the last materialisation, or a wrong id)",
                )
            if stored.get("merchant_category") is None:
                return self._reject(
                    "merchant_id",
                    txn.merchant_id,
                    "unknown_merchant",
                    "no merchant features in the feature store",
                )
        else:
            self.metrics.fallbacks.labels(reason=lookup.fallback_reason).inc()

        started = time.perf_counter()
        request = {
            "amount": txn.amount,
            "channel": txn.channel,
            "ip_region": txn.ip_region,
            "event_ts": event_ts,
        }
        columns: dict[str, list[Any]] = {name: [value] for name, value in request.items()}
        # Fallback: every stored feature is absent, so the transform applies its defaults.
        served = {name: (stored or {}).get(name) for name in STORED_FEATURES}
        if stored is not None:
            # a transaction of this user scored moments ago may not have reached the store yet
            served = self.sink.fresh_velocity(txn.user_id, served)
        columns.update({name: [value] for name, value in served.items()})
        inputs = build_model_inputs(columns)
        score = float(model.predict(to_matrix(inputs, model.feature_order))[0])
        self.metrics.inference_latency.observe(time.perf_counter() - started)

        decision: Decision = "decline" if score >= model.threshold else "approve"
        self._decided[decision].inc()
        self.metrics.scores.observe(score)
        request_id = uuid.uuid4().hex
        record = {
            "request_id": request_id,
            "transaction_id": txn.transaction_id,
            "logged_at": datetime.now(UTC).isoformat(),
            "event_ts": event_ts,
            **entity,
            "request": {**request, "timestamp": when.isoformat()},
            "features": served,
            "model_inputs": {name: float(values[0]) for name, values in inputs.items()},
            "score": score,
            "decision": decision,
            "threshold": model.threshold,
            "model_version": model.version,
            "fallback": stored is None,
            "fallback_reason": lookup.fallback_reason,
        }
        push = None
        if stored is not None:  # a fallback never saw the velocity state: nothing to update
            from serving.prediction_log import VelocityPush

            push = VelocityPush(
                txn.user_id,
                event_ts,
                txn.amount,
                served["last_txn_ts"],
                served["velocity_1h"],
                served["small_velocity_1h"],
            )
        self.sink.submit(record, push)
        return ScoreResult(
            request_id=request_id,
            transaction_id=txn.transaction_id,
            score=score,
            decision=decision,
            threshold=model.threshold,
            model_version=model.version,
            fallback=stored is None,
            fallback_reason=lookup.fallback_reason,
        )

    def _reject(self, field: str, value: int, reason: str, why: str) -> JSONResponse:
        self.metrics.rejected.labels(reason=reason).inc()
        message = f"unknown {field} {value}: {why}"
        return JSONResponse(
            {
                "error": message,
                "detail": [{"type": reason, "loc": [field], "msg": message, "input": value}],
            },
            status_code=422,
        )

    @bentoml.api(route="/reload")
    def reload(self) -> ReloadResult:
        """Check the champion alias now; load and swap in a new version if it moved."""
        outcome = self.champion.check()
        return ReloadResult(
            model_version=outcome.version,
            previous_version=outcome.previous_version,
            changed=outcome.changed,
            detail=outcome.detail,
        )

    # --- lifecycle ------------------------------------------------------------------------
    def _publish_version(self, old: ServedModel | None, new: ServedModel) -> None:
        if old is not None:
            self.metrics.model_info.labels(
                old.bundle.name, old.version, old.bundle.spec["transform_version"]
            ).set(0)
        self.metrics.model_info.labels(
            new.bundle.name, new.version, new.bundle.spec["transform_version"]
        ).set(1)

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        self._close()

    def _close(self) -> None:
        self.champion.stop()
        self.sink.close()
        self.features.close()


# @bentoml.service returns a Service wrapper, which type checkers see as the plain class.
FraudScorer.add_asgi_middleware(InvalidRequestStatus, paths=("/score",))  # type: ignore[attr-defined]
