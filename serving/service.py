"""The fraud scoring service: ``FraudScorer``, a BentoML 1.4 service.

Owns: wiring the champion model (``serving.model``), online features with their fallback
(``serving.online_features``), the shared transform and the prediction sink
(``serving.prediction_log``) into the HTTP API, plus readiness and shutdown.
Must not: compute model inputs itself (``features.transforms.build_model_inputs`` does), or
train, register or promote models.

The stack runs it under its release supervisor (``fraudlab serve``, ``control.serve``), which
holds serving's port and runs BentoML's own HTTP worker for the deployed release on it, so a
deploy starts the new release beside the old one and switches without dropping a request. By
hand, for a look on its own::

    bentoml serve serving.service:FraudScorer --host 127.0.0.1 --port $FRAUDLAB_SERVING_PORT

Give each stack its own ``BENTOML_HOME`` (e.g. ``$FRAUDLAB_HOME/bentoml``): ``bentoml serve``
empties ``$BENTOML_HOME/prometheus_multiproc_dir`` at start, so a second server sharing the
home silently takes over the first one's /metrics.

Start-up loads the champion (MLflow, else the cached last bundle, checked against its recorded
hashes) and opens the feature store before the worker accepts requests; with neither a registry
nor a cache the worker stops with a message saying what to run, and the supervisor starts it
again until a champion appears (``/readyz`` stays unready meanwhile).

Endpoints: ``POST /score`` (one transaction → score and decision), ``POST /reload`` (check the
champion alias now), BentoML's ``/livez``, ``/readyz`` (true once the model is loaded and the log
writer runs; it never waits on the feature store) and ``/metrics``.

Per request: validate (pydantic; 4xx with the reason), look up stored features with a deadline
(on timeout or error score from the request alone — see ``serving.online_features`` for the
fallback), refuse unknown users and merchants with 422 (an unknown device is just a new
device), transform with the shared transform, put columns in the model's own feature order by
name, run onnxruntime, decide with the model's own threshold, and enqueue the log record and
the velocity push for the background thread. The response names the model version that scored.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys

import bentoml
from starlette.responses import JSONResponse

from foundation.settings import get_settings
from serving.http import InvalidRequestStatus
from serving.schemas import ReloadResult, ScoreResult, Transaction
from serving.scorer import Rejection, Scorer

# A registry outage must cost a start-up or a reload check seconds, not the minutes MLflow's
# default retry schedule (7 retries, exponential backoff) would spend; the poller retries on its
# own schedule anyway, and start-up falls back to the cached bundle. Operators can override.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")

# The background thread's Feast push is milliseconds of pure Python once a second. With Python's
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
    # Concurrency comes from the event loop: /score is async and its work (a ~1 ms feature read,
    # the transform, onnxruntime) runs inline, saving the thread hop that a sync API (BentoML's
    # single-slot limiter, or `threads=N`) adds to every request; a store that turns slow is
    # read under a deadline in a thread pool instead (serving.online_features).
    workers=1,
    traffic={"timeout": 10},
)
class FraudScorer:
    def __init__(self) -> None:
        self.scorer = Scorer(get_settings())
        atexit.register(self.scorer.close)  # a second line of defence if shutdown is skipped

    # Async: a check of this process's own state (model loaded, log writer alive), answered on
    # the event loop without a thread, and never by asking the feature store or MLflow.
    async def __is_ready__(self) -> bool:
        return self.scorer.ready()

    # output_spec is explicit because a refusal returns its own 422 response instead of raising:
    # BentoML logs a raised error with a full traceback at ERROR, and an unknown user is an
    # ordinary answer, not a server fault.
    @bentoml.api(route="/score", output_spec=ScoreResult)
    async def score(self, txn: Transaction, /) -> ScoreResult | JSONResponse:
        result = await self.scorer.score(txn)
        if isinstance(result, Rejection):
            return JSONResponse(result.body(), status_code=422)
        return result

    @bentoml.api(route="/reload")
    def reload(self) -> ReloadResult:
        """Check the champion alias now; load and swap in a new version if it moved."""
        return self.scorer.reload()

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        self.scorer.close()


# @bentoml.service returns a Service wrapper, which type checkers see as the plain class.
FraudScorer.add_asgi_middleware(InvalidRequestStatus, paths=("/score",))  # type: ignore[attr-defined]
