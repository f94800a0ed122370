"""The scoring core: one transaction in, a scored and logged decision out.

Owns: the request path — feature lookup (with fallback), read-your-writes velocity, the shared
transform, onnxruntime, the model's own threshold, metrics, and handing the record to the
prediction sink — independent of any web framework. ``serving.service`` wraps it in BentoML;
the benchmark wraps the very same object in a bare uvicorn app to measure BentoML's overhead.
Must not: parse HTTP, or compute model inputs itself (``features.transforms`` does).
"""

from __future__ import annotations

import gc
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from features.transforms import build_model_inputs, to_matrix
from foundation.settings import Settings
from model.decision import DECISIONS, Decision, decide
from model.record import PredictionRecord, RejectionRecord
from serving.metrics import serving_metrics
from serving.model import Champion, ServedModel, load_champion, thread_settings
from serving.online_features import OnlineFeatures
from serving.prediction_log import PredictionSink, VelocityPush
from serving.schemas import ReloadResult, ScoreResult, Transaction

log = logging.getLogger("fraudlab.serving")


@dataclass(frozen=True)
class Rejection:
    """A well-formed request about an entity the stack does not know (answered with 422)."""

    field: str
    value: int
    reason: str
    message: str

    def body(self) -> dict[str, Any]:
        return {
            "error": self.message,
            "detail": [
                {
                    "type": self.reason,
                    "loc": [self.field],
                    "msg": self.message,
                    "input": self.value,
                }
            ],
        }


class Scorer:
    """Everything loaded once at start-up, and the per-request path."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.release = settings.release_id  # logged with every record: which code scored it
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
        # Start-up leaves ~1M long-lived objects (Feast, MLflow, onnxruntime, pandas). Freezing
        # them keeps every later garbage collection from walking them: a full pass over that
        # heap is a stall of tens of milliseconds in the middle of some request.
        gc.collect()
        gc.freeze()
        log.info(
            "serving model %s v%s (threshold %.4f, feature service %s; %s) ready in %.1fs",
            model.bundle.name,
            model.version,
            model.threshold,
            model.feature_service,
            thread_settings(model.session),
            time.perf_counter() - started,
        )

    async def score(self, txn: Transaction) -> ScoreResult | Rejection:
        """Score one transaction, or refuse it (unknown user or merchant)."""
        received = time.perf_counter()
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
                    txn,
                    model.version,
                    event_ts,
                    "user_id",
                    txn.user_id,
                    "unknown_user",
                    "no profile in the feature store (a user who signed up"
                    " after the last materialisation, or a wrong id)",
                )
            if stored.get("merchant_category") is None:
                return self._reject(
                    txn,
                    model.version,
                    event_ts,
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
        served = {name: (stored or {}).get(name) for name in model.stored_features}
        if stored is not None:
            # a transaction of this user scored moments ago may not have reached the store yet
            served = self.sink.fresh_velocity(txn.user_id, served)
        columns.update({name: [value] for name, value in served.items()})
        inputs = build_model_inputs(columns)
        score = float(model.predict(to_matrix(inputs, model.feature_order))[0])
        self.metrics.inference_latency.observe(time.perf_counter() - started)

        decision: Decision = decide(score, model.threshold)
        self._decided[decision].inc()
        self.metrics.scores.observe(score)
        request_id = uuid.uuid4().hex
        record = PredictionRecord(
            request_id=request_id,
            transaction_id=txn.transaction_id,
            logged_at=datetime.now(UTC).isoformat(),
            event_ts=event_ts,
            user_id=txn.user_id,
            merchant_id=txn.merchant_id,
            device_id=txn.device_id,
            request={**request, "timestamp": when.isoformat()},
            features=served,
            model_inputs={name: float(values[0]) for name, values in inputs.items()},
            score=score,
            decision=decision,
            threshold=model.threshold,
            model_version=model.version,
            fallback=stored is None,
            fallback_reason=lookup.fallback_reason,
            synthetic=txn.synthetic,
            # lookup + transform + inference, as this process saw it (HTTP parsing excluded)
            latency_ms=(time.perf_counter() - received) * 1000.0,
            release=self.release,
        )
        push = None
        # A fallback never saw the velocity state, and synthetic traffic (load tests, probes)
        # must not change a real card holder's: nothing to update in either case.
        if stored is not None and not txn.synthetic:
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

    def _reject(
        self,
        txn: Transaction,
        model_version: str,
        event_ts: float,
        field: str,
        value: int,
        reason: str,
        why: str,
    ) -> Rejection:
        """Refuse the request, count it, and log it beside the predictions (never silently)."""
        self.metrics.rejected.labels(reason=reason).inc()
        self.sink.submit_rejection(
            RejectionRecord(
                request_id=uuid.uuid4().hex,
                transaction_id=txn.transaction_id,
                logged_at=datetime.now(UTC).isoformat(),
                event_ts=event_ts,
                user_id=txn.user_id,
                merchant_id=txn.merchant_id,
                device_id=txn.device_id,
                reason=reason,
                field=field,
                model_version=model_version,
                synthetic=txn.synthetic,
                release=self.release,
            )
        )
        return Rejection(field, value, reason, f"unknown {field} {value}: {why}")

    def _publish_version(self, old: ServedModel | None, new: ServedModel) -> None:
        if old is not None:
            self.metrics.model_info.labels(
                old.bundle.name, old.version, old.bundle.spec["transform_version"]
            ).set(0)
        self.metrics.model_info.labels(
            new.bundle.name, new.version, new.bundle.spec["transform_version"]
        ).set(1)

    def ready(self) -> bool:
        return self.sink.alive()

    def reload(self) -> ReloadResult:
        """Check the champion alias now; load and swap in a new version if it moved."""
        outcome = self.champion.check()
        return ReloadResult(
            model_version=outcome.version,
            previous_version=outcome.previous_version,
            changed=outcome.changed,
            detail=outcome.detail,
        )

    def close(self) -> None:
        """Stop polling, drain and fsync the prediction log, release the store (idempotent)."""
        self.champion.stop()
        self.sink.close()
        self.features.close()
