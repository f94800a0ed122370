"""Online feature lookup with a deadline, and the fallback when the store cannot answer.

Owns: the request path's one ``FeatureStore``, the cached ``FeatureService`` objects, the small
thread pool lookups run in, and the decision to fall back.
Must not: transform features (``features.transforms``) or write to the store
(``serving.prediction_log`` pushes).

Fallback: a lookup that raises, or (while the store is known to misbehave) does not answer
within ``Settings.feature_timeout_ms``, is abandoned, and the transaction is scored from its
request fields alone — the same ``build_model_inputs`` call with every stored feature missing,
so the transform's documented defaults ("no history") apply. The response says
``fallback: true`` with the reason (``timeout`` or ``error:<ExceptionType>``), the prediction
log records it, and ``fraudlab_feature_fallbacks`` counts it. A fallback score is less
informed, not wrong: the request is never failed because the feature store is slow or down.

The budget holds whatever the store does, in both stacks, by two bounds:
- nothing in the store waits longer than the budget on someone else: the store is opened with
  ``wait_s`` = the budget (SQLite's busy timeout for a lock another process holds, Redis's
  socket timeout for a silent server; ``features.store.open_store``), so even the one read
  that runs on the event loop cannot hold it (and every other request, and ``/readyz``) for
  longer — Python's default busy timeout held it 5 s per request while a writer kept SQLite
  locked;
- once a read is slow or fails, the following reads run in a thread pool under the deadline
  (``GUARD_S``), so a lookup stuck in the pool costs its request the budget, never the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from features.store import open_store
from foundation.settings import Settings
from serving.model import RateLimitedWarning

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore

log = logging.getLogger("fraudlab.serving")

GUARD_S = 30.0  # after a slow read, how long reads run in the pool under the deadline


@dataclass(frozen=True)
class Lookup:
    """Stored features for one transaction, or why there are none."""

    values: dict[str, Any] | None  # feature name → value as Feast served it (None = missing)
    fallback_reason: str | None
    seconds: float


class OnlineFeatures:
    def __init__(self, settings: Settings) -> None:
        self.timeout_s = settings.feature_timeout_ms / 1000.0
        # Nothing inside the store may wait on another party for longer than the budget.
        self.store: FeatureStore = open_store(settings, wait_s=self.timeout_s)
        self._services: dict[str, FeatureService] = {}
        # Two threads: a lookup is SQLite I/O of ~1 ms, two cores serve ~100 rps with room to
        # spare. A hung store can hold both threads; later lookups then queue, time out and are
        # cancelled before they start, so the pool never grows a backlog.
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="feature-lookup")
        self._warn = RateLimitedWarning()
        self._guard_until = 0.0  # perf_counter time until which reads run under the deadline

    def service(self, name: str) -> FeatureService:
        """The named feature service, fetched from the registry once."""
        found = self._services.get(name)
        if found is None:
            found = self._services[name] = self.store.get_feature_service(name)
        return found

    def warm_up(self, service_name: str) -> None:
        """Resolve the service and read once, so no request pays the first-read costs.

        An unknown service fails start-up; a store that cannot answer now does not (serving
        starts, ready, and falls back until the store answers)."""
        service = self.service(service_name)
        try:
            self._read(service, {"user_id": -1, "merchant_id": -1, "device_id": -1})
        except Exception as exc:  # noqa: BLE001 - the requests' own lookups fall back
            self._trip_guard()
            log.warning(
                "online store unavailable at start-up (%s: %s); requests fall back until it"
                " answers",
                type(exc).__name__,
                exc,
            )

    def _read(self, service: FeatureService, entity: dict[str, int]) -> dict[str, Any]:
        rows = self.store.get_online_features(features=service, entity_rows=[entity]).to_dict()
        # One entity row: unwrap the columns. Keys are looked up by name downstream, never by
        # position (Feast's key order is not the order asked for).
        return {name: column[0] for name, column in rows.items()}

    async def lookup(self, service_name: str, entity: dict[str, int]) -> Lookup:
        """Stored features for ``entity``, or a fallback (see the module docstring).

        A healthy store answers in about a millisecond, so the read runs inline on the event
        loop: handing it to a thread costs about as much again in thread switches and GIL
        hand-overs (measured: 3.5 vs 2.4 ms of worker CPU per request). That read can wait on
        nothing for longer than the budget (the store's own bounds, see the module docstring).
        A read that errors falls back at once; a read slower than the deadline still answers.
        Either trips a guard: for the next ``GUARD_S`` seconds reads run in the thread pool
        under the deadline, so a misbehaving store costs one request up to the budget, not one
        per request, and never holds the event loop.
        """
        started = time.perf_counter()
        guarded = started < self._guard_until
        try:
            service = self.service(service_name)
            if guarded:
                future = self._pool.submit(self._read, service, entity)
                try:
                    values = await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_s)
                except TimeoutError:
                    # Not started yet (both threads held by stuck reads): it never runs. Started:
                    # it finishes in the pool within the store's own bound, nobody waits for it.
                    future.cancel()
                    self._trip_guard()
                    self._warn.failure(
                        "online feature lookup exceeded %.0f ms; scoring without stored features",
                        self.timeout_s * 1000,
                    )
                    return Lookup(None, "timeout", time.perf_counter() - started)
            else:
                values = self._read(service, entity)
        except Exception as exc:  # noqa: BLE001 - any store failure means fallback
            self._trip_guard()
            self._warn.failure(
                "online feature lookup failed (%s: %s); scoring without stored features",
                type(exc).__name__,
                exc,
            )
            return Lookup(None, f"error:{type(exc).__name__}", time.perf_counter() - started)
        elapsed = time.perf_counter() - started
        if elapsed > self.timeout_s:
            self._trip_guard()
            self._warn.failure(
                "online feature lookup took %.0f ms (deadline %.0f ms); guarding"
                " lookups with the deadline for %.0f s",
                elapsed * 1000,
                self.timeout_s * 1000,
                GUARD_S,
            )
        elif not guarded:
            self._warn.recovered("online feature lookups answer again")
        return Lookup(values, None, elapsed)

    def _trip_guard(self) -> None:
        self._guard_until = time.perf_counter() + GUARD_S

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
