"""Training stages over a run directory, on a small real world (Feast join included, no MLflow).

The retrain DAG runs each stage in its own task and passes only the run directory on, so a stage
must find everything it needs there: these tests run the stages one after another the same way
and check what each left behind, that a broken feed stops the run before anything is fitted,
and that a run on ``fraud_model_v2`` or ``fraud_model_v3`` trains on the dispute feature the v1
contract lacks.
"""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from features.transforms import MODEL_FEATURES, PASSTHROUGH_FEATURES
from model.registry import NATIVE_FILE, ONNX_FILE, SPEC_FILE
from pipelines import training, validation
from tests.conftest import small_settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def settings(small_world_home):
    from features.store import apply_definitions, open_store
    from pipelines import tasks

    settings = small_settings(small_world_home)
    tasks.prepare_data(settings)
    apply_definitions(open_store(settings), settings)
    return settings


@pytest.fixture(scope="module")
def finished_run(settings) -> training.TrainingRun:
    run = training.start_run(settings, reason="unit test")
    training.validate_raw_data(settings, run)
    training.write_training_set(settings, run)
    training.train(settings, run)
    training.evaluate(settings, run)
    return run


def test_each_stage_leaves_its_output_in_the_run_directory(finished_run) -> None:
    run = training.TrainingRun.load(finished_run.directory)  # as the next task would
    assert run == finished_run and run.reason == "unit test"
    for name in ("run.json", "validation.json", "training_set.parquet", "fit.json", NATIVE_FILE):
        assert run.path(name).exists(), name
    # the bundle holds what MLflow stores and serving and the monitors read
    for name in (ONNX_FILE, NATIVE_FILE, SPEC_FILE, "feature_order.json", "evaluation.json"):
        assert (run.bundle / name).exists(), name
    for name in ("reference.parquet", "transform_spec.json", "model_card.md", "evaluation.md"):
        assert (run.bundle / name).exists(), name
    spec = json.loads((run.bundle / SPEC_FILE).read_text())
    assert spec["feature_service"] == "fraud_model_v1"
    assert spec["feature_order"] == list(MODEL_FEATURES)
    assert spec["train_window"] == list(run.train_window) and spec["clock"] == run.clock
    assert spec["threshold"] == json.loads(run.path("fit.json").read_text())["threshold"]
    validated = json.loads(run.path("validation.json").read_text())
    assert set(validated) == {"raw transactions", "training set"}
    assert all(v["passed"] for v in validated.values())


def test_the_persisted_training_set_rebuilds_the_same_model_matrix(finished_run) -> None:
    ts = training.read_training_set(finished_run)
    assert set(ts.frame["split"]) == {"train", "valid", "test"}
    assert ts.x.shape == (len(ts.frame), len(MODEL_FEATURES))
    evaluation = json.loads((finished_run.bundle / "evaluation.json").read_text())
    assert evaluation["metrics"]["test"]["pr_auc"] > 0.5  # it learned the fraud patterns
    assert evaluation["parity"]["decision_agreement"] >= 0.999


def test_the_evaluation_report_shows_the_threshold_its_band_and_the_cost_curve(
    finished_run,
) -> None:
    evaluation = json.loads((finished_run.bundle / "evaluation.json").read_text())
    fitted = json.loads(finished_run.path("fit.json").read_text())
    threshold = evaluation["threshold"]
    assert threshold["chosen"] == fitted["threshold"]
    low, high = threshold["band"]
    assert low <= threshold["chosen"] <= high
    assert threshold["validation_frauds"] > 0 and threshold["bootstrap_samples"] > 0
    curve = threshold["curve"]
    assert len(curve) >= training.CURVE_POINTS
    assert [p["threshold"] for p in curve] == sorted(p["threshold"] for p in curve)
    assert [p["decline_rate"] for p in curve] == sorted(
        (p["decline_rate"] for p in curve), reverse=True
    )
    marked = {p["mark"]: p for p in curve if p["mark"]}
    assert marked["chosen"]["threshold"] == threshold["chosen"]
    # the labels' exact minimum is the lowest cost the curve shows
    assert marked["label_optimum"]["cost"] == min(p["cost"] for p in curve)
    # what the decisions monitor compares live traffic with
    baseline = evaluation["baseline"]
    assert baseline["decline_rate"] == evaluation["metrics"]["test"]["decline_rate"]
    assert 0.0 < baseline["fraud_rate"] < 0.05
    report = (finished_run.bundle / "evaluation.md").read_text()
    assert "## Decision threshold (validation split)" in report
    assert f"{threshold['chosen']:.4f}" in report and "label_optimum" in report


def test_a_broken_feed_stops_the_run_before_the_training_set_and_says_what_to_do(
    settings, tmp_path
) -> None:
    broken = small_settings(tmp_path / "home")
    shutil.copytree(settings.data_dir, broken.data_dir)
    shutil.copytree(settings.label_dir, broken.label_dir)
    txns = pd.read_parquet(broken.data_dir / "transactions.parquet")
    txns.loc[txns.index[::50], "amount"] = None  # an upstream schema change: nulls
    txns.to_parquet(broken.data_dir / "transactions.parquet", index=False)

    run = training.start_run(broken)
    with pytest.raises(validation.DataValidationError) as caught:
        training.validate_raw_data(broken, run)
    message = str(caught.value)
    assert "column amount" in message and "not trained" in message
    assert "fraudlab data" in message  # the next step
    assert not run.path("training_set.parquet").exists()
    assert not run.path(NATIVE_FILE).exists()
    recorded = json.loads(run.path("validation.json").read_text())
    assert recorded["raw transactions"]["passed"] is False


@pytest.mark.parametrize(
    ("service", "extra", "available"),
    [
        ("fraud_model_v2", "user_disputed_txn_count_7d", "user_disputes_available_ts"),
        ("fraud_model_v3", "merchant_disputed_txn_count_7d", "merchant_disputes_available_ts"),
    ],
)
def test_a_run_on_a_dispute_service_trains_on_its_passthrough_feature(
    settings, service, extra, available
) -> None:
    assert extra in PASSTHROUGH_FEATURES
    chosen = settings.model_copy(update={"feature_service": service})
    run = training.start_run(chosen)
    assert run.feature_service == service
    ts = training.write_training_set(chosen, run)
    # v1's inputs, then that service's own pass-through feature and no other
    assert ts.feature_order == [*MODEL_FEATURES, extra]
    assert ts.frame[extra].notna().any()
    # the dispute table's availability time travels with the set, for the leakage screen
    assert available in ts.frame.columns
    assert available not in ts.feature_order


def test_a_run_keeps_the_parameters_it_started_with(settings) -> None:
    weak = settings.model_copy(
        update={"train_lgbm_params": {"num_leaves": 4}, "train_num_boost_round": 7}
    )
    run = training.start_run(weak)
    loaded = training.TrainingRun.load(run.directory)
    assert loaded.lgbm_params["num_leaves"] == 4
    assert loaded.lgbm_params["learning_rate"] == training.LGBM_PARAMS["learning_rate"]
    assert loaded.num_boost_round == 7


def test_registering_a_model_records_its_environment_without_a_warning(
    settings, finished_run, tmp_path, monkeypatch
) -> None:
    """MLflow warned "Failed to resolve installed pip version" on every registration (a uv
    environment has no pip); the model's requirements are still onnxruntime and MLflow."""
    import logging

    import mlflow

    monkeypatch.chdir(tmp_path)  # a local store's artifacts land in ./mlruns
    local = settings.model_copy(update={"mlflow_tracking_uri": f"sqlite:///{tmp_path}/mlflow.db"})
    run = training.TrainingRun.load(shutil.copytree(finished_run.directory, tmp_path / "run"))
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("mlflow")  # MLflow's loggers do not propagate to the root
    logger.addHandler(handler)
    try:
        version = training.register(local, run)
    finally:
        logger.removeHandler(handler)
    assert version == "1"
    assert not [r.getMessage() for r in records if "pip" in r.getMessage()]
    requirements = mlflow.artifacts.load_text(f"models:/{local.model_name}/1/requirements.txt")
    assert requirements.split() == [f"mlflow=={mlflow.__version__}", "onnxruntime"]
