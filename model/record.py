"""The prediction record: what serving logs for every scored request, and what monitors read.

Owns: the one typed schema of a prediction-log line (``PredictionRecord``), its version, its
column list (``COLUMNS``) and how a line of JSON becomes a record (``from_json``); the same for
a refused request (``RejectionRecord``, logged beside the predictions). Serving's
scorer builds records; the monitors (drift, skew, performance, freshness, latency, quality),
the request-quality suite, and the scenario lab read them. None of them reads a key by name
from a dict: a field renamed here is renamed for all of them, or fails type-checking.

Versions: 1 is the unversioned record written before this schema existed (the same fields
less ``release``); 2 adds ``release`` (the serving release that scored the request) and the
``schema_version`` field itself. A version-1 line is read as such (``release`` is None); a
line from a newer version, or one lacking a field its version has, is refused with a
``RecordSchemaError`` that names what is wrong — never guessed at.

Must not: read or write files (``serving.prediction_log`` writes, ``monitoring.sources``
reads), or import anything above ``model``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from model.decision import Decision

SCHEMA_VERSION = 2
UNVERSIONED = 1  # lines without ``schema_version``: written before the schema was typed


class RecordSchemaError(ValueError):
    """A prediction-log line that this code cannot read without guessing."""


@dataclass(frozen=True, slots=True)
class PredictionRecord:
    """One scored request as serving logged it."""

    request_id: str
    transaction_id: str | None
    logged_at: str  # wall clock, ISO 8601 with time zone
    event_ts: float  # when the transaction happened (epoch seconds, simulated time)
    user_id: int
    merchant_id: int
    device_id: int
    request: dict[str, Any]  # the request's fields as received (timestamp as ISO 8601)
    features: dict[str, Any]  # stored features as served (None where missing)
    model_inputs: dict[str, float | None]  # the model's input row, by feature name
    score: float
    decision: Decision
    threshold: float
    model_version: str
    fallback: bool  # scored without stored features (see fallback_reason)
    fallback_reason: str | None
    synthetic: bool  # load tests and probes: the monitors leave these out
    latency_ms: float | None  # lookup + transform + inference in the scorer
    release: str | None = None  # serving release id (None: unknown, or a version-1 line)
    schema_version: int = SCHEMA_VERSION

    @property
    def logged_ts(self) -> float:
        """``logged_at`` as epoch seconds."""
        return datetime.fromisoformat(self.logged_at).timestamp()

    @property
    def amount(self) -> float:
        return float(self.request["amount"])

    def to_json(self) -> dict[str, Any]:
        """The record as one JSON object (non-finite numbers become null: JSON has none)."""
        return {name: _json_safe(getattr(self, name)) for name in COLUMNS}

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], where: str = "a prediction-log line"
    ) -> PredictionRecord:
        """The record a decoded JSON line holds; ``RecordSchemaError`` when it cannot be read."""
        version = data.get("schema_version", UNVERSIONED)
        if not isinstance(version, int) or version > SCHEMA_VERSION or version < UNVERSIONED:
            raise RecordSchemaError(
                f"{where} has schema version {version!r}; this fraudlab reads versions"
                f" {UNVERSIONED} to {SCHEMA_VERSION}: update fraudlab, or move that log aside"
            )
        wanted = V1_FIELDS if version == UNVERSIONED else COLUMNS
        missing = [name for name in wanted if name not in data]
        if missing:
            raise RecordSchemaError(
                f"{where} (schema version {version}) lacks {', '.join(missing)}: it was not"
                " written by fraudlab's serving, or was cut short; move that log aside"
            )
        values = {name: data[name] for name in wanted}
        values["schema_version"] = version
        return cls(**values)


REJECTION_SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class RejectionRecord:
    """One request serving refused with a 4xx (an entity it does not know), logged beside the
    predictions (``rejections-YYYY-MM-DD.jsonl``) so refusals are counted, not only answered."""

    request_id: str
    transaction_id: str | None
    logged_at: str
    event_ts: float
    user_id: int
    merchant_id: int
    device_id: int
    reason: str  # e.g. unknown_user, unknown_merchant
    field: str  # the request field that named the unknown entity
    model_version: str
    synthetic: bool
    release: str | None
    schema_version: int = REJECTION_SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in REJECTION_COLUMNS}

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], where: str = "a rejection-log line"
    ) -> RejectionRecord:
        version = data.get("schema_version")
        if version != REJECTION_SCHEMA_VERSION:
            raise RecordSchemaError(
                f"{where} has schema version {version!r}; this fraudlab reads version"
                f" {REJECTION_SCHEMA_VERSION}: update fraudlab, or move that log aside"
            )
        missing = [name for name in REJECTION_COLUMNS if name not in data]
        if missing:
            raise RecordSchemaError(f"{where} lacks {', '.join(missing)}; move that log aside")
        return cls(**{name: data[name] for name in REJECTION_COLUMNS})


def _json_safe(value: object) -> object:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(PredictionRecord))
V1_FIELDS: tuple[str, ...] = tuple(c for c in COLUMNS if c not in ("release", "schema_version"))
REJECTION_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(RejectionRecord))
