"""The champion model as served: its bundle, one onnxruntime session, and hot reload.

Owns: loading a bundle into a ready-to-score ``ServedModel`` (validated with a dry run before it
can serve), finding the champion at start-up (MLflow, or the on-disk cache of the last bundle
when MLflow is unreachable), and swapping in a new champion when the alias moves.

Every bundle is checked before it serves (``model.registry``): a cached copy against the digest
training registered (a changed file — an edited threshold, say — is named in a warning and the
bundle fetched again), a fresh download too; with MLflow unreachable, a cached copy changed
since its download is refused, and serving does not start rather than serve it.
Must not: fetch features, compute model inputs (``features.transforms``), or talk to MLflow
other than through ``model.registry``.

Reload is load-then-swap: the new bundle and its session are built and dry-run completely
while the old model keeps serving, then one reference assignment makes it current. A request
reads the reference once, so it is scored, logged and answered by one version.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from features.transforms import (
    REQUEST_FIELDS,
    TRANSFORM_VERSION,
    build_model_inputs,
    stored_inputs,
    to_matrix,
)
from foundation.settings import Settings
from model import registry
from model.registry import ModelBundle

if TYPE_CHECKING:
    import onnxruntime as ort

log = logging.getLogger("fraudlab.serving")

REQUIRED_SPEC_KEYS = (
    "feature_service",
    "feature_order",
    "threshold",
    "onnx_input",
    "onnx_output",
    "transform_version",
)


class BundleError(RuntimeError):
    """A bundle that cannot be served (wrong transform, unknown feature, broken graph)."""


@dataclass(frozen=True)
class ServedModel:
    """A bundle with its onnxruntime session: everything needed to score one row."""

    bundle: ModelBundle
    session: ort.InferenceSession
    input_name: str
    output_names: list[str]
    feature_order: list[str]
    threshold: float

    @property
    def version(self) -> str:
        return self.bundle.version

    @property
    def feature_service(self) -> str:
        return self.bundle.feature_service

    @cached_property
    def stored_features(self) -> tuple[str, ...]:
        """The stored features this model's inputs are built from (its feature service's)."""
        return stored_inputs(self.feature_order)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Calibrated fraud probabilities for the rows of ``x`` (float32, model feature order)."""
        return self.session.run(self.output_names, {self.input_name: x})[0]


def open_session(bundle: ModelBundle, settings: Settings) -> ort.InferenceSession:
    """One session, threads set on purpose: the same options training's latency check and
    parity check use (``model.export.onnx_session``), so what was measured is what serves.
    One intra-op thread by default: a single row gains nothing from parallelism, and on two
    shared cores extra ORT threads fight the HTTP loop and wreck the tail."""
    from model.export import onnx_session

    return onnx_session(
        bundle.onnx_path.read_bytes(),
        threads=settings.ort_threads,
        inter_op_threads=settings.ort_inter_op_threads,
    )


def thread_settings(session: ort.InferenceSession) -> str:
    """The threads a session actually runs with, as the start-up log states them."""
    import onnxruntime as ort

    options = session.get_session_options()
    mode = "parallel" if options.execution_mode == ort.ExecutionMode.ORT_PARALLEL else "sequential"
    return (
        f"onnxruntime {options.intra_op_num_threads} intra-op /"
        f" {options.inter_op_num_threads} inter-op threads, {mode}"
    )


def prepare(bundle: ModelBundle, settings: Settings) -> ServedModel:
    """Build a session for ``bundle`` and prove it scores through the shared transform."""
    missing = [key for key in REQUIRED_SPEC_KEYS if key not in bundle.spec]
    if missing:
        raise BundleError(f"model {bundle.version}: model_spec.json lacks {missing}")
    if bundle.spec["transform_version"] != TRANSFORM_VERSION:
        # Serving would feed the model inputs computed differently from training: skew.
        raise BundleError(
            f"model {bundle.version} was trained with transform "
            f"'{bundle.spec['transform_version']}' but this server runs '{TRANSFORM_VERSION}':"
            " deploy serving code that matches the model, or promote a model trained with it"
        )
    session = open_session(bundle, settings)
    inputs = {i.name for i in session.get_inputs()}
    outputs = {o.name for o in session.get_outputs()}
    if bundle.spec["onnx_input"] not in inputs or bundle.spec["onnx_output"] not in outputs:
        raise BundleError(
            f"model {bundle.version}: graph has inputs {sorted(inputs)} and outputs "
            f"{sorted(outputs)}, spec names {bundle.spec['onnx_input']!r} → "
            f"{bundle.spec['onnx_output']!r}"
        )
    served = ServedModel(
        bundle=bundle,
        session=session,
        input_name=str(bundle.spec["onnx_input"]),
        output_names=[str(bundle.spec["onnx_output"])],
        feature_order=bundle.feature_order,
        threshold=bundle.threshold,
    )
    dry_run(served)
    return served


def dry_run(served: ServedModel) -> None:
    """Score one synthetic row end to end: catches feature-order and shape mistakes before
    the model serves, and pays onnxruntime's first-run cost outside any request."""
    row: dict[str, list[object]] = {name: [None] for name in served.stored_features}
    row.update(
        {"amount": [10.0], "channel": ["web"], "ip_region": ["EU"], "event_ts": [time.time()]}
    )
    assert set(REQUEST_FIELDS) <= row.keys()
    try:
        x = to_matrix(build_model_inputs(row), served.feature_order)
        scores = np.asarray(served.predict(x))
    except Exception as exc:
        raise BundleError(f"model {served.version} failed its dry run: {exc}") from exc
    if scores.shape != (1,) or not np.isfinite(scores).all():
        raise BundleError(
            f"model {served.version}: dry run returned {scores!r}; expected one finite"
            " probability per row (output shape [N])"
        )


def load_champion(settings: Settings) -> ServedModel:
    """The champion at start-up: from MLflow, else the last bundle this server cached."""
    cache = settings.serving_cache_dir
    cache.mkdir(parents=True, exist_ok=True)
    try:
        bundle = registry.load_alias(settings, cache)
    except Exception as exc:  # MLflow down, no champion, download failed: try the cache
        try:
            cached = registry.last_loaded(cache)
        except registry.BundleIntegrityError as refused:
            raise RuntimeError(
                f"cannot start serving: MLflow at {settings.tracking_uri} said: {exc}. And {refused}"
            ) from refused
        if cached is None:
            raise RuntimeError(
                f"cannot start serving: no champion model. MLflow at {settings.tracking_uri}"
                f" said: {exc}. No cached bundle in {cache} either. Start MLflow"
                " (`make up`) and register a champion (`fraudlab train`), then restart serving."
            ) from exc
        log.warning(
            "MLflow unavailable at start-up (%s); serving cached champion version %s"
            " from %s until the registry answers again",
            exc,
            cached.version,
            cache,
        )
        bundle = cached
    return prepare(bundle, settings)


class RateLimitedWarning:
    """Log a recurring failure at most once per ``every_s`` seconds, and recovery once after.

    A flapping dependency (a slow store that answers every other time) must not turn the log
    into one line per request: the window is kept across recoveries.
    """

    def __init__(self, every_s: float = 60.0) -> None:
        self.every_s = every_s
        self._last = -every_s
        self._suppressed = 0
        self._reported = False  # a warning went out since the last recovery line

    def failure(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last >= self.every_s:
            suffix = (
                f" (+{self._suppressed} more since the last warning)" if self._suppressed else ""
            )
            log.warning(message + suffix, *args)
            self._last, self._suppressed, self._reported = now, 0, True
        else:
            self._suppressed += 1

    def recovered(self, message: str, *args: object) -> None:
        if self._reported:
            log.info(message, *args)
            self._reported = False


@dataclass(frozen=True)
class ReloadOutcome:
    previous_version: str
    version: str
    changed: bool
    detail: str


class Champion:
    """Holds the model being served and replaces it when the champion alias moves."""

    def __init__(
        self,
        settings: Settings,
        initial: ServedModel,
        validate: Callable[[ServedModel], object] | None = None,
        on_swap: Callable[[ServedModel, ServedModel], None] | None = None,
    ) -> None:
        self.settings = settings
        self.current = initial  # read once per request; replaced by one assignment
        # Extra checks a new model must pass before it serves (e.g. its feature service exists).
        self._validate = validate
        self._on_swap = on_swap
        self._lock = threading.Lock()  # one load at a time (poller and POST /reload)
        self._warn = RateLimitedWarning()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed_versions: set[str] = set()

    def check(self) -> ReloadOutcome:
        """Ask MLflow where the alias points; load and swap if it moved."""
        with self._lock:
            before = self.current
            try:
                found = registry.resolve_alias(self.settings)
            except Exception as exc:  # noqa: BLE001 - any failure keeps the old model
                self._warn.failure(
                    "champion check failed, still serving version %s: %s", before.version, exc
                )
                self._count("registry_unreachable")
                return ReloadOutcome(
                    before.version,
                    before.version,
                    False,
                    f"registry unreachable, kept version {before.version}",
                )
            self._warn.recovered("registry reachable again (serving version %s)", before.version)
            if found is None:
                return ReloadOutcome(
                    before.version,
                    before.version,
                    False,
                    "no champion alias in the registry; kept current model",
                )
            version = found[0]
            if version == before.version:
                return ReloadOutcome(before.version, before.version, False, "already current")
            try:
                # load_alias also points the on-disk cache at this version, so a restart
                # during an MLflow outage comes back with the newest champion.
                bundle = registry.load_alias(self.settings, self.settings.serving_cache_dir)
                version = bundle.version
                candidate = prepare(bundle, self.settings)
                if self._validate is not None:
                    self._validate(candidate)
            except Exception as exc:  # noqa: BLE001 - any failure keeps the old model
                if version not in self._failed_versions:
                    log.error(
                        "champion moved to version %s but it cannot be served; still"
                        " serving version %s: %s",
                        version,
                        before.version,
                        exc,
                    )
                    self._failed_versions.add(version)
                self._count("rejected")
                return ReloadOutcome(
                    before.version, before.version, False, f"version {version} rejected: {exc}"
                )
            self.current = candidate  # the swap: atomic, in-flight requests keep their model
            if self._on_swap is not None:
                self._on_swap(before, candidate)
            self._count("swapped")
            log.info("now serving model version %s (was %s)", version, before.version)
            return ReloadOutcome(before.version, version, True, f"loaded version {version}")

    @staticmethod
    def _count(outcome: str) -> None:
        from serving.metrics import serving_metrics

        serving_metrics().reloads.labels(outcome=outcome).inc()

    def start_polling(self) -> None:
        def loop() -> None:
            while not self._stop.wait(self.settings.reload_interval_s):
                try:
                    self.check()
                except Exception:  # the poller must survive anything; serving continues
                    log.exception("champion check crashed; will retry")

        self._thread = threading.Thread(target=loop, name="champion-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
