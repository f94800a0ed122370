"""ONNX export of the calibrated model, and the parity check against native LightGBM.

Owns: turning a LightGBM booster plus its Platt calibration into one ONNX graph whose single
output ``score`` is the calibrated fraud probability, and measuring how far that graph's scores
are from the native model's. Serving runs exactly this graph; nothing downstream calibrates.

Must not: choose thresholds, log to MLflow, or know about features beyond their count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.decision import decline

ONNX_INPUT = "input"
ONNX_OUTPUT = "score"
PARITY_ROW_TOLERANCE = 1e-4  # a row "differs" when |Δscore| exceeds this
PARITY_MAX_SHARE_DIFFERING = 0.005
PARITY_MIN_DECISION_AGREEMENT = 0.999


@dataclass(frozen=True)
class PlattCalibration:
    """score = sigmoid(a * logit(p) + b), fitted on the validation split."""

    a: float
    b: float

    def apply(self, probability: np.ndarray) -> np.ndarray:
        p = np.asarray(probability, dtype=np.float64)
        with np.errstate(divide="ignore"):
            logit = np.log(p) - np.log1p(-p)
        return 1.0 / (1.0 + np.exp(-(self.a * logit + self.b)))


def fit_platt(probability: np.ndarray, y: np.ndarray) -> PlattCalibration:
    """Fit Platt scaling on held-out raw probabilities (a logistic regression on the logit)."""
    from sklearn.linear_model import LogisticRegression

    p = np.clip(np.asarray(probability, dtype=np.float64), 1e-12, 1 - 1e-12)
    logit = (np.log(p) - np.log1p(-p)).reshape(-1, 1)
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(logit, np.asarray(y, dtype=int))
    return PlattCalibration(a=float(lr.coef_[0, 0]), b=float(lr.intercept_[0]))


def native_scores(booster, calibration: PlattCalibration, x: np.ndarray) -> np.ndarray:
    """Calibrated scores from the native LightGBM booster (the reference for parity)."""
    return calibration.apply(booster.predict(x, num_threads=1))


def to_onnx(booster, calibration: PlattCalibration, n_features: int):
    """Convert ``booster`` and append the calibration: one graph, input [N, k] → score [N]."""
    import onnx
    from onnx import TensorProto, helper
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    model = convert_lightgbm(
        booster,
        initial_types=[(ONNX_INPUT, FloatTensorType([None, n_features]))],
        zipmap=False,
    )
    graph = model.graph
    probs = next(o.name for o in graph.output if o.name.startswith("probabilities"))
    const = [
        helper.make_tensor("cal_col", TensorProto.INT64, [], [1]),
        helper.make_tensor("cal_one", TensorProto.FLOAT, [], [1.0]),
        helper.make_tensor("cal_a", TensorProto.FLOAT, [], [calibration.a]),
        helper.make_tensor("cal_b", TensorProto.FLOAT, [], [calibration.b]),
    ]
    graph.initializer.extend(const)
    graph.node.extend(
        [
            helper.make_node("Gather", [probs, "cal_col"], ["cal_p"], axis=1),
            helper.make_node("Sub", ["cal_one", "cal_p"], ["cal_q"]),
            helper.make_node("Log", ["cal_p"], ["cal_log_p"]),
            helper.make_node("Log", ["cal_q"], ["cal_log_q"]),
            helper.make_node("Sub", ["cal_log_p", "cal_log_q"], ["cal_logit"]),
            helper.make_node("Mul", ["cal_logit", "cal_a"], ["cal_scaled"]),
            helper.make_node("Add", ["cal_scaled", "cal_b"], ["cal_z"]),
            helper.make_node("Sigmoid", ["cal_z"], [ONNX_OUTPUT]),
        ]
    )
    # Only the calibrated score leaves the graph: serving cannot pick the wrong output.
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(ONNX_OUTPUT, TensorProto.FLOAT, [None]))
    onnx.checker.check_model(model)
    return model


def onnx_session(model_bytes: bytes, threads: int = 1, inter_op_threads: int = 1):
    """An onnxruntime session with threads set on purpose (defaults wreck tails on 2 cores).

    ``threads`` are intra-op threads (one operator split across them: a tree ensemble of more
    than a few dozen trees, even for one row). ``inter_op_threads`` above 1 runs independent
    nodes of the graph in parallel (``ORT_PARALLEL``); at 1 they run in sequence on the calling
    thread, which is what a one-row request wants.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = inter_op_threads
    options.execution_mode = (
        ort.ExecutionMode.ORT_PARALLEL
        if inter_op_threads > 1
        else ort.ExecutionMode.ORT_SEQUENTIAL
    )
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def onnx_scores(session, x: np.ndarray) -> np.ndarray:
    return session.run([ONNX_OUTPUT], {ONNX_INPUT: np.asarray(x, dtype=np.float32)})[0]


def parity(
    booster, calibration: PlattCalibration, session, x: np.ndarray, threshold: float
) -> dict[str, float]:
    """How far the ONNX graph's scores are from the native model's on ``x``.

    ONNX tree ensembles compare in float32 while LightGBM splits in float64, so a handful of
    rows whose value sits within one float32 step of a split threshold legitimately take the
    other branch. A broken export (wrong output, lost calibration, shuffled inputs) moves most
    rows instead, so parity is judged on the share of rows that differ and on decisions, not
    on the single worst row.
    """
    native = native_scores(booster, calibration, x.astype(np.float32).astype(np.float64))
    converted = onnx_scores(session, x).astype(np.float64)
    diff = np.abs(native - converted)
    # A row scored within float32 rounding of the threshold lands on either side of it by the
    # precision of the graph, not a fault. Thresholds are chosen among scores, so a small model
    # with few distinct scores puts whole groups of rows exactly on it: such a flip agrees when
    # the two scores agree; a flip between scores that differ is a broken export.
    on_threshold = (np.abs(native - threshold) <= PARITY_ROW_TOLERANCE) & (
        diff <= PARITY_ROW_TOLERANCE
    )
    agree = (decline(native, threshold) == decline(converted, threshold)) | on_threshold
    if not len(diff):
        return {
            "max_abs_diff": 0.0,
            "p999_abs_diff": 0.0,
            "share_rows_differing": 0.0,
            "decision_agreement": 1.0,
        }
    return {
        "max_abs_diff": float(np.max(diff)),
        "p999_abs_diff": float(np.quantile(diff, 0.999)),
        "share_rows_differing": float(np.mean(diff > PARITY_ROW_TOLERANCE)),
        "decision_agreement": float(np.mean(agree)),
    }


def parity_ok(result: dict[str, float]) -> bool:
    """The parity rule used by training and the promotion gate alike."""
    return (
        result["share_rows_differing"] <= PARITY_MAX_SHARE_DIFFERING
        and result["p999_abs_diff"] <= PARITY_ROW_TOLERANCE * 10
        and result["decision_agreement"] >= PARITY_MIN_DECISION_AGREEMENT
    )


def load_native(directory, spec: dict):
    """The native booster and calibration stored in a model bundle (for parity re-checks)."""
    import lightgbm as lgb

    from model.registry import NATIVE_FILE

    booster = lgb.Booster(model_file=str(directory / NATIVE_FILE))
    cal = spec["calibration"]
    return booster, PlattCalibration(a=float(cal["a"]), b=float(cal["b"]))
