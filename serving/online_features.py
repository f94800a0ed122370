"""Online feature lookup with a deadline, and the fallback when the store cannot answer.

Owns: the request path's one ``FeatureStore``, the cached ``FeatureService`` objects, the small
thread pool lookups run in, and the decision to fall back.
Must not: transform features (``features.transforms``) or write to the store
(``serving.prediction_log`` pushes).

Fallback: a lookup that does not answer within ``Settings.feature_timeout_ms`` or that raises
is abandoned, and the transaction is scored from its request fields alone — the same
``build_model_inputs`` call with every stored feature missing, so the transform's documented
defaults ("no history") apply. The response says ``fallback: true`` with the reason
(``timeout`` or ``error:<ExceptionType>``), the prediction log records it, and
``fraudlab_feature_fallbacks`` counts it. A fallback score is less informed, not wrong: the
request is never failed because the feature store is slow or down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from features.store import open_store
from fraudlab.settings import Settings
from serving.model import RateLimitedWarning

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore

log = logging.getLogger("fraudlab.serving")


@dataclass(frozen=True)
class Lookup:
    """Stored features for one transaction, or why there are none."""

    values: dict[str, Any] | None  # feature name → value as Feast served it (None = missing)
    fallback_reason: str | None
    seconds: float


class OnlineFeatures:
    def __init__(self, settings: Settings) -> None:
        self.store: FeatureStore = open_store(settings)
        self.timeout_s = settings.feature_timeout_ms / 1000.0
        self._services: dict[str, FeatureService] = {}
        # Two threads: a lookup is SQLite I/O of ~1 ms, two cores serve ~100 rps with room to
        # spare. A hung store can hold both threads; later lookups then queue, time out and are
        # cancelled before they start, so the pool never grows a backlog.
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="feature-lookup")
        self._warn = RateLimitedWarning()

    def service(self, name: str) -> FeatureService:
        """The named feature service, fetched from the registry once."""
        found = self._services.get(name)
        if found is None:
            found = self._services[name] = self.store.get_feature_service(name)
        return found

    def warm_up(self, service_name: str) -> None:
        """Resolve the service and read once, so no request pays the first-read costs."""
        self._read(self.service(service_name), {"user_id": -1, "merchant_id": -1,
                                                "device_id": -1})

    def _read(self, service: FeatureService, entity: dict[str, int]) -> dict[str, Any]:
        rows = self.store.get_online_features(features=service, entity_rows=[entity]).to_dict()
        # One entity row: unwrap the columns. Keys are looked up by name downstream, never by
        # position (Feast's key order is not the order asked for).
        return {name: column[0] for name, column in rows.items()}

    async def lookup(self, service_name: str, entity: dict[str, int]) -> Lookup:
        started = time.perf_counter()
        try:
            service = self.service(service_name)
            future = self._pool.submit(self._read, service, entity)
            values = await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_s)
        except TimeoutError:
            future.cancel()
            self._warn.failure("online feature lookup exceeded %.0f ms; scoring without stored"
                               " features", self.timeout_s * 1000)
            return Lookup(None, "timeout", time.perf_counter() - started)
        except Exception as exc:  # noqa: BLE001 - any store failure means fallback
            self._warn.failure("online feature lookup failed (%s: %s); scoring without stored"
                               " features", type(exc).__name__, exc)
            return Lookup(None, f"error:{type(exc).__name__}", time.perf_counter() - started)
        self._warn.recovered("online feature lookups answer again")
        return Lookup(values, None, time.perf_counter() - started)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
