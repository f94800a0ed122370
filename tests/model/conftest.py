"""A small model trained by the real pipeline stages (Feast point-in-time join included)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from tests.conftest import small_settings


@dataclass
class TrainedModel:
    training_set: object
    booster: object
    calibration: object

    def score_frame(self, frame) -> np.ndarray:
        from model import export
        from pipelines.training import model_matrix

        x = model_matrix(frame, self.training_set.feature_order)
        return export.native_scores(self.booster, self.calibration, x.astype(np.float64))


@pytest.fixture(scope="session")
def trained(small_world_home) -> TrainedModel:
    from features.store import apply_definitions, open_store
    from model import export
    from pipelines import tasks, training
    from pipelines.data import read_clock

    settings = small_settings(small_world_home)
    tasks.prepare_data(settings)
    apply_definitions(open_store(settings), settings)
    ts = training.build_training_set(settings, read_clock(settings))
    y = ts.frame["label"].to_numpy()
    train = (ts.frame["split"] == "train").to_numpy()
    valid = (ts.frame["split"] == "valid").to_numpy()
    booster = training.fit(ts.x[train], y[train], ts.x[valid], y[valid], ts.feature_order, 1, 7)
    calibration = export.fit_platt(booster.predict(ts.x[valid]), y[valid])
    return TrainedModel(ts, booster, calibration)
