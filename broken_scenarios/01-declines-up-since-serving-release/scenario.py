"""A serving release computes the model's inputs differently from training (skew).

inject: deploys a serving release built from the working tree with one change to
``serving/scorer.py`` — the kind of change a teammate ships to serving alone, duplicating a piece
of logic that belongs to ``features/transforms.py`` (the seed picks which):

- ``minor_units``: amounts are divided by 100 before the transform ("the new gateway sends
  cents"), so every amount-derived input is a hundredth of what training computed;
- ``column_order``: the input row is filled in a hand-written column order (an "optimisation"
  of ``to_matrix``) instead of the model's own feature order: every input is named right in the
  log, but the model reads them in the wrong places;
- ``velocity_decay``: the velocity counters are decayed again in the scorer, with a day where
  the transform uses an hour.

Then a few simulated hours of traffic are replayed, so that ``make monitor M=skew`` has served
requests to compare: model inputs (``minor_units``, ``velocity_decay``) or scores
(``column_order``) differ from the shared transform and the champion re-run offline.

verify (outcomes): synthetic probe transactions (``synthetic: true``: logged, left out of the
monitors) built from upcoming transactions: the model inputs serving logged equal
``features.transforms.build_model_inputs`` over the same request fields and the stored features
serving logged (the transform isolated from feature-store timing), and serving's scores equal
the champion's ONNX graph on those inputs. The same two comparisons over the production
requests serving scored since it last started, when there are enough of them. Any fix that puts
serving back on the shared transform passes (``fraudlab deploy``, a fixed branch deployed);
retraining or promoting another model does not.

reset: nothing beyond the baseline, which redeploys the baseline release.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lab import Check, ScenarioContext
from lab.context import edit_once

SCORER = "serving/scorer.py"
REPLAYED_REQUESTS = 200  # upcoming transactions replayed after the release (skew monitor input)
MAX_REPLAY_HOURS = 12.0
PROBES = 40
MIN_LIVE = 20  # production requests since serving started before they are judged
SCORE_TOL = 1e-4  # the skew monitor's: a score "differs" beyond this


# --- the change each variant deploys ------------------------------------------------------------


def _replace(text: str, old: str, new: str) -> str:
    return edit_once(text, old, new, SCORER)


def _minor_units(source: str) -> str:
    source = _replace(
        source,
        'log = logging.getLogger("fraudlab.serving")\n',
        'log = logging.getLogger("fraudlab.serving")\n'
        "MINOR_UNITS = 100  # minor units (cents) per major unit\n",
    )
    return _replace(
        source,
        "        columns: dict[str, list[Any]] = {name: [value] for name, value in request.items()}\n",
        "        columns: dict[str, list[Any]] = {name: [value] for name, value in request.items()}\n"
        "        # Gateway v2 reports amounts in minor units (cents): scale them to major units so\n"
        "        # the model sees the same amounts whichever gateway a transaction came through.\n"
        '        columns["amount"] = [txn.amount / MINOR_UNITS]\n',
    )


ROW_ORDER = (
    "    # the transaction\n"
    '    "amount_log",\n'
    '    "hour_of_day",\n'
    '    "is_web",\n'
    '    "geo_mismatch",\n'
    "    # the card holder\n"
    '    "amount_to_user_mean",\n'
    '    "user_txn_count_1d",\n'
    '    "user_txn_count_7d",\n'
    '    "user_amount_std_30d",\n'
    '    "user_chargeback_count_90d",\n'
    '    "account_age_days",\n'
    "    # the merchant\n"
    '    "amount_to_merchant_mean",\n'
    '    "merchant_category_code",\n'
    '    "merchant_txn_count_7d",\n'
    '    "merchant_chargeback_rate_30d",\n'
    "    # the device\n"
    '    "user_device_txn_count_30d",\n'
    '    "is_new_device",\n'
    "    # velocity\n"
    '    "secs_since_last_txn",\n'
    '    "velocity_1h",\n'
    '    "small_velocity_1h",\n'
)


def _column_order(source: str) -> str:
    source = _replace(
        source,
        "from features.transforms import build_model_inputs, to_matrix\n",
        "from features.transforms import build_model_inputs\n",
    )
    source = _replace(
        source,
        "from typing import Any\n",
        "from typing import Any\n\nimport numpy as np\n",
    )
    source = _replace(
        source,
        'log = logging.getLogger("fraudlab.serving")\n',
        'log = logging.getLogger("fraudlab.serving")\n\n'
        "# The model's input row, laid out once: one float32 buffer filled per request instead of\n"
        "# a column stacked per feature (to_matrix was the largest item of the scorer's profile).\n"
        f"INPUT_ROW: tuple[str, ...] = (\n{ROW_ORDER})\n",
    )
    return _replace(
        source,
        "        score = float(model.predict(to_matrix(inputs, model.feature_order))[0])\n",
        "        row = np.fromiter((inputs[name][0] for name in INPUT_ROW), np.float32, len(INPUT_ROW))\n"
        "        score = float(model.predict(row.reshape(1, -1))[0])\n",
    )


def _velocity_decay(source: str) -> str:
    source = _replace(
        source,
        "from features.transforms import build_model_inputs, to_matrix\n",
        "from features.transforms import SECONDS_PER_DAY, build_model_inputs, to_matrix\n",
    )
    source = _replace(source, "import logging\n", "import logging\nimport math\n")
    source = _replace(
        source,
        "from typing import Any\n",
        "from typing import Any\n\nimport numpy as np\n",
    )
    source = _replace(
        source,
        "@dataclass(frozen=True)\nclass Rejection:",
        "def _velocity_now(served: dict[str, Any], event_ts: float) -> dict[str, np.ndarray]:\n"
        '    """The velocity counters decayed from the card holder\'s last transaction to'
        ' ``event_ts``."""\n'
        '    last = served.get("last_txn_ts")\n'
        "    if last is None:\n"
        '        return {"velocity_1h": np.zeros(1), "small_velocity_1h": np.zeros(1)}\n'
        "    decay = math.exp(-max(event_ts - last, 0.0) / SECONDS_PER_DAY)\n"
        "    return {\n"
        "        name: np.array([(served.get(name) or 0.0) * decay])\n"
        '        for name in ("velocity_1h", "small_velocity_1h")\n'
        "    }\n\n\n"
        "@dataclass(frozen=True)\nclass Rejection:",
    )
    return _replace(
        source,
        "        inputs = build_model_inputs(columns)\n",
        "        inputs = build_model_inputs(columns)\n"
        "        # Velocity as of this transaction: decay the freshest state we know (the store's,\n"
        "        # or the one laid over it a moment ago) to the event time, next to the overlay.\n"
        "        inputs.update(_velocity_now(served, event_ts))\n",
    )


CHANGES: dict[str, Callable[[str], str]] = {
    "minor_units": _minor_units,
    "column_order": _column_order,
    "velocity_decay": _velocity_decay,
}


def patched_scorer(change: str, source: str) -> str:
    """``serving/scorer.py`` as the variant's release ships it (tests check every variant still
    applies to the working tree)."""
    return CHANGES[change](source)


# --- helpers --------------------------------------------------------------------------------------


def _replay_hours(ctx: ScenarioContext) -> float:
    """Simulated hours until ``REPLAYED_REQUESTS`` upcoming transactions have happened."""
    import pandas as pd

    clock = ctx.clock()
    times = pd.read_parquet(
        ctx.settings.data_dir / "transactions.parquet", columns=["event_timestamp"]
    )["event_timestamp"]
    upcoming = times[times > clock].sort_values()
    if upcoming.empty:
        return 0.0
    nth = upcoming.iloc[min(REPLAYED_REQUESTS, len(upcoming)) - 1]
    hours = math.ceil((nth - clock).total_seconds() / 1800.0) / 2.0  # half hours
    return min(max(hours, 1.0), MAX_REPLAY_HOURS)


def _bundle(ctx: ScenarioContext, version: str, cache: dict[str, Any]) -> Any:
    """The bundle of a registered version (downloaded once per verify), with its session."""
    if version not in cache:
        from model.export import onnx_session

        bundle = ctx.model_bundle(version)
        cache[version] = (bundle, onnx_session(bundle.onnx_path.read_bytes()))
    return cache[version]


def compare(
    ctx: ScenarioContext, records: list[dict[str, Any]], cache: dict[str, Any]
) -> tuple[list[str], list[str]]:
    """Per record: do the logged model inputs equal the shared transform over the logged request
    fields and stored features, and does the served score equal the model's graph on them?
    Returns (input findings, score findings), each a line per differing record."""
    import numpy as np

    from features.transforms import REQUEST_FIELDS, build_model_inputs, to_matrix

    inputs_differ, scores_differ = [], []
    for record in records:
        columns: dict[str, list[Any]] = {
            name: [record.request.get(name)] for name in REQUEST_FIELDS
        }
        columns.update({name: [value] for name, value in (record.features or {}).items()})
        rebuilt = build_model_inputs(columns)
        bundle, session = _bundle(ctx, str(record.model_version), cache)
        logged = record.model_inputs or {}
        wrong = [
            f"{name} {logged.get(name)!r} vs {float(rebuilt[name][0])!r}"
            for name in bundle.feature_order
            if name not in logged or ctx.values_differ(logged[name], float(rebuilt[name][0]))
        ]
        if wrong:
            inputs_differ.append(f"{record.request_id}: {'; '.join(wrong[:4])}")
        x = to_matrix(rebuilt, bundle.feature_order)
        graph = session.run([bundle.spec["onnx_output"]], {bundle.spec["onnx_input"]: x})
        expected = float(np.ravel(graph[0])[0])
        if abs(expected - record.score) > SCORE_TOL:
            scores_differ.append(
                f"{record.request_id}: served {record.score:.5f},"
                f" model v{record.model_version} on the transform's inputs {expected:.5f}"
            )
    return inputs_differ, scores_differ


def _probe(ctx: ScenarioContext) -> list[dict[str, Any]]:
    """Score ``PROBES`` synthetic transactions now; their prediction-log records."""
    import httpx

    path = ctx.work_dir / "probe.jsonl"
    ctx.write_synthetic_requests(path, PROBES)
    started = datetime.now(UTC)
    ids: set[str] = set()
    with httpx.Client(base_url=ctx.settings.serving_base_url, timeout=10.0) as client:
        for line in path.read_text().splitlines():
            response = client.post("/score", json=json.loads(line))
            if response.status_code == 200:
                ids.add(response.json()["request_id"])
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 10.0
    while len(found) < len(ids) and time.monotonic() < deadline:
        time.sleep(0.3)  # the log is flushed every 0.1 s by serving's background thread
        for record in ctx.prediction_log(
            logged_since=started,
            include_fallback=True,
            include_synthetic=True,
        ):
            if record.request_id in ids:
                found[record.request_id] = record
    return list(found.values())


def _production_since_start(ctx: ScenarioContext) -> list[dict[str, Any]]:
    """Production requests (not synthetic, not fallbacks) serving scored since it started."""
    started = ctx.serving_started_at()
    if started is None:
        return []
    records = ctx.prediction_log(logged_since=datetime.fromtimestamp(started, UTC))
    return [r for _, r in zip(range(ctx.settings.skew_sample), records, strict=False)]


def _skew_report(ctx: ScenarioContext) -> dict[str, Any] | None:
    reports = sorted(Path(ctx.settings.monitoring_dir).glob("*/skew.json"))
    return json.loads(reports[-1].read_text()) if reports else None


# --- the verbs ----------------------------------------------------------------------------------


def inject(ctx: ScenarioContext) -> None:
    if ctx.private.get("injected"):
        return
    ctx.private["ticket"] = f"RISK-{ctx.rng.randint(1200, 1999)}"
    ctx.private["reporter"] = ctx.rng.choice(["Amara (Fraud Operations)", "Jonas (Risk)"])
    change = str(ctx.variant["change"])
    source = ctx.read_stack_code(SCORER)
    release = ctx.deploy({SCORER: patched_scorer(change, source)})
    ctx.private["release"] = release
    hours = _replay_hours(ctx)
    ctx.log(f"deployed {release} ({change}); replaying {hours:.1f} simulated hours")
    if hours:
        ctx.fast_forward(hours)
    ctx.private["injected"] = True


def verify(ctx: ScenarioContext) -> list[Check]:
    cache: dict[str, Any] = {}
    probes = _probe(ctx)
    if not probes:
        return [
            Check(
                "probe transactions are scored and logged",
                False,
                "no probe request was answered and logged: is serving up (`make status`)?",
            )
        ]
    inputs_differ, scores_differ = compare(ctx, probes, cache)
    checks = [
        Check(
            "probe transactions: the model inputs serving logged match the offline"
            " recomputation from the same request and stored features",
            not inputs_differ,
            f"{len(inputs_differ)} of {len(probes)} differ: " + " | ".join(inputs_differ[:3]),
        ),
        Check(
            "probe transactions: serving's scores match the champion model re-run offline",
            not scores_differ,
            f"{len(scores_differ)} of {len(probes)} differ: " + " | ".join(scores_differ[:3]),
        ),
    ]
    live = _production_since_start(ctx)
    if len(live) < MIN_LIVE:
        checks.append(
            Check(
                "production requests scored since serving started show the same agreement",
                True,
                f"{len(live)} production requests since serving started: fewer than {MIN_LIVE},"
                " not judged",
            )
        )
    else:
        live_inputs, live_scores = compare(ctx, live, cache)
        checks.append(
            Check(
                "production requests scored since serving started show the same agreement",
                not live_inputs and not live_scores,
                f"of {len(live)}: inputs differ in {len(live_inputs)}, scores in"
                f" {len(live_scores)}: " + " | ".join((live_inputs + live_scores)[:3]),
            )
        )
    return checks


def reset(ctx: ScenarioContext) -> None:
    """The baseline restore redeploys the baseline release: nothing else to undo."""


# --- for the contract tests -------------------------------------------------------------------


def symptom(ctx: ScenarioContext) -> list[Check]:
    """The skew monitor compares the replayed requests with the shared transform offline."""
    run = ctx.fraudlab("monitor", "skew", check=False)
    report = _skew_report(ctx) or {}
    score = report.get("score") or {}
    differing = report.get("input_mismatches", 0) + score.get("differing", 0)
    return [
        Check(
            "`make monitor M=skew` alerts: served inputs or scores differ from the offline re-run",
            report.get("status") == "alert" and differing > 0,
            json.dumps(
                {
                    "status": report.get("status"),
                    "n_records": report.get("n_records"),
                    "inputs": {
                        f["feature"]: f["mismatches"]
                        for f in report.get("inputs", [])
                        if f["mismatches"]
                    },
                    "score": score,
                }
            )
            + run.stdout[-500:],
        )
    ]


def reference_fix(ctx: ScenarioContext) -> None:
    """Ship the working tree to serving again (what `fraudlab deploy` does)."""
    ctx.fraudlab("deploy")


def wrong_fix(ctx: ScenarioContext) -> None:
    """Retrain and promote a new model: the release still feeds it skewed inputs."""
    ctx.fraudlab("train")  # registers the new version as champion
    found = ctx.champion()
    assert found is not None
    ctx.wait_for(
        lambda: ctx.served_model_version() == found[0],
        timeout_s=120,
        what=f"serving on the retrained model v{found[0]}",
    )
