"""The HTTP contract of the scoring service: request and response models.

Owns: what a valid request is (types, ranges, vocabularies) and what a response says.
Must not: look anything up or compute model inputs; vocabularies come from
``features.transforms`` so the contract cannot drift from the transform.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from features.transforms import CHANNELS, REGIONS
from foundation.settings import get_settings

# Literal[tuple] expands to Literal["NA", "EU", ...]: the transform's vocabulary is the contract.
Region = Literal[REGIONS]  # type: ignore[valid-type]
Channel = Literal[CHANNELS]  # type: ignore[valid-type]
EntityId = Annotated[int, Field(ge=0, description="Non-negative integer id.")]

MAX_AMOUNT = get_settings().max_amount


class Transaction(BaseModel):
    """One card-not-present transaction to score."""

    # OpenAPI 3.0's singular "example", not JSON Schema's "examples": BentoML 1.4 builds its
    # OpenAPI page from this schema and refuses keys OpenAPI 3.0 lacks (/docs.json answered 500).
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "transaction_id": "t-123",
                "user_id": 42,
                "merchant_id": 7,
                "device_id": 1001,
                "amount": 25.5,
                "channel": "web",
                "ip_region": "EU",
                "timestamp": "2026-02-10T12:00:00Z",
            }
        }
    )

    transaction_id: str | None = Field(default=None, max_length=128)
    user_id: EntityId
    merchant_id: EntityId
    device_id: EntityId
    # NaN and infinity would pass a bare float; a model fed NaN scores garbage silently.
    amount: float = Field(
        gt=0,
        le=MAX_AMOUNT,
        allow_inf_nan=False,
        description=f"Amount in dollars, above 0 and at most {MAX_AMOUNT:g}.",
    )
    channel: Channel  # type: ignore[valid-type]
    ip_region: Region  # type: ignore[valid-type]
    timestamp: AwareDatetime | None = Field(
        default=None, description="When the transaction happened (timezone required; default now)."
    )
    synthetic: bool = Field(
        default=False,
        description=(
            "Load tests and probes: scored and logged like any request, but marked so the"
            " monitors leave it out, and it never updates the card holder's velocity state."
        ),
    )


class ScoreResult(BaseModel):
    """The decision for one transaction and everything needed to explain it later."""

    request_id: str = Field(description="Key of this request's prediction log record.")
    transaction_id: str | None
    score: float = Field(description="Calibrated fraud probability.")
    decision: Literal["decline", "approve"]
    threshold: float = Field(description="The model's own threshold: decline if score >= it.")
    model_version: str
    fallback: bool = Field(description="True when stored features were unavailable.")
    fallback_reason: str | None = None


class ReloadResult(BaseModel):
    """Outcome of a champion check."""

    model_version: str = Field(description="The version serving after the check.")
    previous_version: str
    changed: bool
    detail: str
