"""The prediction record: one typed schema with a version, written by serving, read by all."""

from __future__ import annotations

import json

import pytest

from model.record import (
    COLUMNS,
    SCHEMA_VERSION,
    V1_FIELDS,
    PredictionRecord,
    RecordSchemaError,
)
from monitoring import sources
from pipelines.validation import LOG_COLUMNS
from tests.conftest import prediction_record


def test_a_record_survives_its_json_line() -> None:
    record = prediction_record(release="r7", latency_ms=1.5, model_inputs={"amount_log": 2.0})
    line = json.dumps(record.to_json())
    back = PredictionRecord.from_json(json.loads(line))
    assert back == record and back.schema_version == SCHEMA_VERSION
    assert json.loads(line)["schema_version"] == SCHEMA_VERSION


def test_an_unversioned_line_is_read_as_version_one() -> None:
    data = {k: v for k, v in prediction_record().to_json().items() if k in V1_FIELDS}
    record = PredictionRecord.from_json(data)
    assert record.schema_version == 1 and record.release is None
    assert record.score == data["score"] and record.model_version == data["model_version"]


def test_a_newer_schema_is_refused_not_guessed_at() -> None:
    data = {**prediction_record().to_json(), "schema_version": SCHEMA_VERSION + 1}
    with pytest.raises(RecordSchemaError, match="update fraudlab"):
        PredictionRecord.from_json(data, where="line 3 of predictions-x.jsonl")


def test_a_line_missing_a_field_is_refused_naming_it() -> None:
    data = prediction_record().to_json()
    del data["threshold"]
    with pytest.raises(RecordSchemaError, match="lacks threshold"):
        PredictionRecord.from_json(data)
    old = {k: v for k, v in data.items() if k in V1_FIELDS}  # an old line, cut short
    with pytest.raises(RecordSchemaError, match="schema version 1"):
        PredictionRecord.from_json(old)


def test_the_log_reader_names_the_file_of_an_unreadable_record(tmp_path) -> None:
    good = prediction_record(request_id="a").to_json()
    bad = {**prediction_record(request_id="b").to_json(), "schema_version": 99}
    path = tmp_path / "predictions-2026-11-23.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(RecordSchemaError, match="predictions-2026-11-23.jsonl"):
        sources.read_log(tmp_path)


def test_the_flattened_log_has_every_scalar_field_of_the_schema() -> None:
    nested = {"request", "features", "model_inputs"}
    assert [c for c in LOG_COLUMNS if c in COLUMNS] == [c for c in COLUMNS if c not in nested]
    assert "release" in LOG_COLUMNS and "schema_version" in LOG_COLUMNS
