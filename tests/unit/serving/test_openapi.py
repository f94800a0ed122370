"""The scoring service's OpenAPI page: BentoML can build it from the request and response
models (a JSON Schema key OpenAPI 3.0 lacks made /docs.json answer 500 and `/` show "Failed to
load API definition"), and it documents /score with a valid example request."""

from __future__ import annotations

from serving.schemas import Transaction


def test_the_openapi_spec_builds_and_documents_score_with_a_valid_example() -> None:
    from serving.service import FraudScorer

    spec = FraudScorer.openapi_spec.asdict()  # type: ignore[attr-defined]
    assert "/score" in spec["paths"]
    body = spec["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"]
    example = body["schema"]["example"]
    assert Transaction.model_validate(example).user_id == 42
    answer = spec["paths"]["/score"]["post"]["responses"][200]["content"]["application/json"]
    assert {"score", "decision", "threshold"} <= set(answer["schema"]["properties"])
