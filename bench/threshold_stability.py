"""How stable is the cost-optimal decision threshold across retrains a few simulated days apart?

Trains the real pipeline's stages (training set through Feast, LightGBM, Platt calibration, the
threshold choice: ``pipelines.training``) on one world at several clock positions, and records
per retrain the chosen threshold, the validation split it was chosen on (rows, frauds), how
flat the validation cost curve is around its minimum (the span of thresholds whose cost is
within ``--near`` of the minimum), the bootstrap band the choice reports, and what the same
scores would have given with the exact-minimum rule (``model.decision.choose_threshold``).
Prints a table and the spread (min / max / std) of the chosen and exact thresholds.

    uv run python -m bench.threshold_stability --home /tmp/fraudlab-thresholds

No MLflow, no serving: the home only needs a generated world (made here when missing, with
the small test world's sizes unless ``--default-world``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from foundation.settings import Settings
from model import decision

console = Console(highlight=False, width=200)

# the small world of the unit tests (tests/conftest.py), kept here: bench does not import tests
SMALL_WORLD = {
    "n_users": 3000,
    "n_merchants": 300,
    "history_days": 75,
    "future_days": 5,
    "fraud_rate": 1 / 100,
}


def near_optimal_span(curve: decision.CostCurve, near: float) -> tuple[float, float]:
    """Lowest and highest threshold whose cost is within ``near`` (relative) of the minimum."""
    ok = curve.cost <= curve.cost.min() * (1 + near)
    return float(curve.threshold[ok].min()), float(curve.threshold[ok].max())


def measure(settings: Settings, clock: pd.Timestamp, near: float) -> dict:
    from pipelines import training

    run = training.start_run(settings, reason="threshold stability", clock=clock)
    training.write_training_set(settings, run)
    fitted = training.train(settings, run)
    fit = json.loads(run.path(training.FIT_FILE).read_text())
    ts = training.read_training_set(run)
    y = ts.frame["label"].to_numpy()
    amount = ts.frame["amount"].to_numpy()
    valid = (ts.frame["split"] == "valid").to_numpy()
    test = (ts.frame["split"] == "test").to_numpy()
    from model import export

    score = export.native_scores(fitted.booster, fitted.calibration, ts.x)
    cost = settings.false_decline_cost
    curve = decision.cost_curve(y[valid], score[valid], amount[valid], cost)
    low, high = near_optimal_span(curve, near)
    exact = decision.choose_threshold(y[valid], score[valid], amount[valid], cost)
    test_best = decision.choose_threshold(y[test], score[test], amount[test], cost)

    def test_cost_per_1k(t: float) -> float:
        declined = decision.decline(score[test], t)
        return decision.expected_cost(y[test], declined, amount[test], cost) / test.sum() * 1000

    band = fit.get("threshold_choice", {}).get("band", [None, None])
    return {
        "clock": f"{clock:%Y-%m-%d}",
        "train_days": (run.window[1] - run.window[0]).days,
        "valid_rows": int(valid.sum()),
        "valid_frauds": int(y[valid].sum()),
        "platt": (fitted.calibration.a, fitted.calibration.b),
        "threshold": fitted.threshold,
        "band": tuple(band),
        "exact": exact,
        "near_low": low,
        "near_high": high,
        # how much the labels' curve punishes the chosen threshold vs its own exact minimum
        "valid_cost_vs_min": float(curve.at([fitted.threshold]).cost[0] / curve.cost.min()),
        "valid_decline_rate": float(decision.decline(score[valid], fitted.threshold).mean()),
        "test_best": test_best,
        "test_cost_1k": test_cost_per_1k(fitted.threshold),
        "test_cost_1k_exact": test_cost_per_1k(exact),
        "test_cost_1k_best": test_cost_per_1k(test_best),
    }


def spread(values: list[float]) -> str:
    v = np.asarray(values, dtype=float)
    return f"min {v.min():.4f}  max {v.max():.4f}  std {v.std(ddof=1):.4f}  (max/min {v.max() / v.min():.1f}×)"


def main(
    home: Annotated[Path, typer.Option(help="fraudlab home to train in (world made if missing).")],
    positions: Annotated[int, typer.Option(help="How many clock positions.")] = 6,
    step_days: Annotated[float, typer.Option(help="Simulated days between positions.")] = 3.0,
    near: Annotated[
        float, typer.Option(help="Relative cost margin of the near-optimal span.")
    ] = 0.02,
    default_world: Annotated[
        bool, typer.Option(help="The default world's sizes instead of the small test world.")
    ] = False,
) -> None:
    """Retrain at ``positions`` clocks ``step_days`` apart, ending at the world's present."""
    from features.store import apply_definitions, open_store
    from pipelines import tasks
    from pipelines.data import read_clock

    settings = Settings(_env_file=None, home=home, **({} if default_world else SMALL_WORLD))
    tasks.prepare_data(settings)
    apply_definitions(open_store(settings), settings)
    now = read_clock(settings)
    clocks = [now - pd.Timedelta(days=step_days * k) for k in range(positions - 1, -1, -1)]
    rows = []
    for clock in clocks:
        with console.status(f"retraining at clock {clock:%Y-%m-%d %H:%M}"):
            rows.append(measure(settings, clock, near))
        r = rows[-1]
        console.print(
            f"{r['clock']}: threshold {r['threshold']:.4f} (exact minimum {r['exact']:.4f}),"
            f" {r['valid_frauds']} frauds in validation"
        )
    table = Table(title=f"threshold per retrain ({home})", title_justify="left")
    for column in (
        "clock",
        "train days",
        "valid rows",
        "valid frauds",
        "Platt a, b",
        "chosen",
        "band",
        "exact min",
        f"cost ≤ min×{1 + near:g} for t in",
        "valid cost ÷ min",
        "valid decline",
        "test optimum",
        "test cost/1k chosen / exact / best",
    ):
        table.add_column(column, justify="right")
    for r in rows:
        band = r["band"]
        table.add_row(
            r["clock"],
            str(r["train_days"]),
            f"{r['valid_rows']:,}",
            str(r["valid_frauds"]),
            f"{r['platt'][0]:.2f}, {r['platt'][1]:.2f}",
            f"{r['threshold']:.4f}",
            "–" if band[0] is None else f"{band[0]:.4f}–{band[1]:.4f}",
            f"{r['exact']:.4f}",
            f"{r['near_low']:.4f}–{r['near_high']:.4f}",
            f"{r['valid_cost_vs_min']:.2f}",
            f"{r['valid_decline_rate']:.2%}",
            f"{r['test_best']:.4f}",
            f"{r['test_cost_1k']:.1f} / {r['test_cost_1k_exact']:.1f} / {r['test_cost_1k_best']:.1f}",
        )
    console.print(table)
    console.print("chosen threshold: " + spread([r["threshold"] for r in rows]))
    console.print("exact minimum:    " + spread([r["exact"] for r in rows]))
    out = home / "threshold-stability.json"
    out.write_text(json.dumps(rows, indent=2, default=float))
    console.print(f"rows: {out}")


if __name__ == "__main__":
    typer.run(main)
