"""The ONNX session serving and the pipelines build: threads as configured, same scores."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from model import export
from serving.model import thread_settings


def graph() -> bytes:
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 4))
    y = (x[:, 0] + rng.normal(scale=0.5, size=400) > 0).astype(int)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_threads": 1, "num_leaves": 7},
        lgb.Dataset(x, y),
        20,
    )
    return export.to_onnx(booster, export.PlattCalibration(1.0, 0.0), 4).SerializeToString()


def test_sessions_run_the_threads_they_are_given_and_score_alike() -> None:
    model = graph()
    default = export.onnx_session(model)
    parallel = export.onnx_session(model, threads=3, inter_op_threads=4)

    options = default.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    options = parallel.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (3, 4)
    assert options.execution_mode == ort.ExecutionMode.ORT_PARALLEL

    x = np.random.default_rng(1).normal(size=(50, 4)).astype(np.float32)
    assert np.array_equal(export.onnx_scores(default, x), export.onnx_scores(parallel, x))

    # what serving's start-up line says about each
    assert thread_settings(default) == "onnxruntime 1 intra-op / 1 inter-op threads, sequential"
    assert thread_settings(parallel) == "onnxruntime 3 intra-op / 4 inter-op threads, parallel"
