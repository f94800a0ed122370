"""Wiring: the stages of the stack chained into the units the CLI, the stack and DAGs run.

Owns: the order of stages and their progress output. Each stage is a function in the package
that owns it; this module only calls them, so an Airflow task and a CLI command run the same
code. Must not: compute anything itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console

from foundation.settings import Settings

console = Console(stderr=True, highlight=False)


@contextmanager
def step(title: str) -> Iterator[None]:
    """Print a step's start and its duration (long work shows progress)."""
    console.print(f"[bold cyan]→[/] {title} …")
    started = time.perf_counter()
    try:
        yield
    except Exception:
        console.print(f"[bold red]✗[/] {title} failed after {time.perf_counter() - started:.1f}s")
        raise
    console.print(f"[green]✓[/] {title} ({time.perf_counter() - started:.1f}s)")


def prepare_data(settings: Settings, force: bool = False) -> bool:
    """Generate the world and feature tables unless data for these settings exists.

    Returns True when data was (re)generated.
    """
    from pipelines import data

    if data.data_exists(settings) and not force:
        console.print(f"[green]✓[/] data for seed {settings.seed} already in {settings.data_dir}")
        if data.feature_tables_current(settings):
            return False
        with step("rebuilding the offline feature tables (their definition changed)"):
            rows = data.build_feature_tables(settings)
        console.print("  " + ", ".join(f"{k}: {v:,}" for k, v in rows.items()))
        _reset_feature_store(settings)
        return True
    archived = data.archive_predictions(settings)
    if archived:
        console.print(f"  the previous world's prediction log moved to {archived}")
    with step(
        f"generating {settings.n_users:,} users over "
        f"{settings.history_days}+{settings.future_days} days (seed {settings.seed})"
    ):
        meta = data.generate_world(settings)
    console.print(
        f"  {meta['n_transactions']:,} transactions, fraud rate {meta['fraud_rate']:.4f}"
    )
    with step("building offline feature tables"):
        rows = data.build_feature_tables(settings)
    console.print("  " + ", ".join(f"{k}: {v:,}" for k, v in rows.items()))
    _reset_feature_store(settings)
    return True


def _reset_feature_store(settings: Settings) -> None:
    """New tables: the online store and its materialisation history start over."""
    from features.store import reset

    with step("clearing the feature store built from the previous tables"):
        if not reset(settings):
            console.print("  (there was none)")


def prepare_features(settings: Settings) -> None:
    """Apply Feast definitions and materialise the online store up to the stack's clock."""
    from features.store import apply_definitions, materialize, open_store
    from pipelines import data

    with step("opening the feature store"):
        store = open_store(settings)
    with step("applying feature definitions"):
        apply_definitions(store, settings)
    now = data.read_clock(settings)
    with step(f"materialising online features up to {now:%Y-%m-%d %H:%M}"):
        materialize(store, now.to_pydatetime())


def train_and_register(settings: Settings, promote: bool = True) -> str:
    """Train a model on the history, register it, and (optionally) make it the champion.

    Returns the registered version.
    """
    from model.registry import CHAMPION, resolve_alias
    from pipelines import gates, training

    first_champion = promote and resolve_alias(settings, CHAMPION) is None
    version = training.run(settings, promote=promote, progress=step)
    if first_champion:
        with step("the first champion: its own gates (ONNX parity, leakage screen)"):
            passed = gates.gate_first_champion(settings)
        if not passed:
            console.print(f"[red]✗[/] v{version} failed its own gates: `make status` says so")
    return version


# --- the retrain DAG: one training stage per task, sharing a run directory --------------------


def start_training_run(settings: Settings, reason: str = "manual") -> str:
    """Open a training run and validate the raw feed of its window; returns the run directory.

    Raises ``pipelines.validation.DataValidationError`` (nothing is trained) when it fails.
    """
    from pipelines import training

    run = training.start_run(settings, reason=reason)
    start, end = run.window
    console.print(
        f"training run {run.directory} ({reason}): window {start:%Y-%m-%d} → {end:%Y-%m-%d}, "
        f"labels as of {run.clock[:16]}, feature service {run.feature_service}"
    )
    with step("validating the raw transaction feed with Great Expectations"):
        result = training.validate_raw_data(settings, run)
    console.print(f"  {result.summary()}")
    return str(run.directory)


def build_training_set(settings: Settings, run_dir: str) -> str:
    """The point-in-time training set, validated before fitting (raises when it fails)."""
    from pipelines import training

    run = training.TrainingRun.load(run_dir)
    with step(f"building the point-in-time training set through Feast ({run.feature_service})"):
        ts = training.write_training_set(settings, run)
    y, split = ts.frame["label"], ts.frame["split"]
    console.print(
        f"  {len(ts.frame):,} transactions, {int(y.sum())} frauds; "
        + ", ".join(
            f"{name} {int((split == name).sum()):,}" for name in ("train", "valid", "test")
        )
        + f"; {len(ts.feature_order)} model inputs; training-set suite passed"
    )
    return run_dir


def train_model(settings: Settings, run_dir: str) -> str:
    """LightGBM, Platt calibration and the cost-optimal threshold."""
    from pipelines import training

    run = training.TrainingRun.load(run_dir)
    with step("training LightGBM, calibrating, choosing the cost-optimal threshold"):
        model = training.train(settings, run)
    console.print(
        f"  {model.booster.num_trees()} trees (best iteration {model.booster.best_iteration}), "
        f"threshold {model.threshold:.4f}"
    )
    return run_dir


def evaluate_model(settings: Settings, run_dir: str) -> str:
    """Test metrics and slices, ONNX export and parity, single-row latency; the bundle."""
    from pipelines import training

    run = training.TrainingRun.load(run_dir)
    with step("evaluating, exporting to ONNX and checking parity with LightGBM"):
        report = training.evaluate(settings, run)
    m = report["metrics"]["test"]
    console.print(
        f"  test PR-AUC {m['pr_auc']:.3f}, recall@1%FPR {m['recall_at_1pct_fpr']:.3f}, "
        f"cost/1k {m['expected_cost_per_1k']:.1f}; ONNX parity "
        f"{report['parity']['decision_agreement']:.3%} decisions agree, single-row p99 "
        f"{report['latency']['onnx_p99_us']:.0f} µs; bundle in {run.bundle}"
    )
    return run_dir


def gate_training_run(settings: Settings, run_dir: str) -> str:
    """The promotion gates on the run's bundle; raises ``GateFailure`` (the report) on FAIL."""
    from pathlib import Path

    from pipelines import gates

    code, report = gates.gate_training_run(settings, Path(run_dir), progress=step)
    if code != 0:
        raise gates.GateFailure(report)  # the task log ends with it
    print(report)
    return run_dir


def register_training_run(settings: Settings, run_dir: str) -> str:
    """Register the run's model under the alias 'challenger'; returns the run directory."""
    from model.registry import CHALLENGER
    from pipelines import training

    run = training.TrainingRun.load(run_dir)
    with step("logging the run to MLflow and registering the model"):
        version = training.register(settings, run, CHALLENGER)
    console.print(f"  registered {settings.model_name} v{version} as '{CHALLENGER}'")
    return run_dir


def promote_training_run(settings: Settings, run_dir: str) -> str:
    """Make the gated, registered run the champion; returns its version."""
    from pathlib import Path

    from pipelines import gates, training

    console.print(gates.promote_training_run(settings, Path(run_dir)))
    version = training.registered_version(training.TrainingRun.load(run_dir))
    assert version is not None  # promote_training_run refuses unregistered runs
    return version


def reload_serving(settings: Settings, version: str) -> str:
    """``POST /reload``: serving loads the champion now; fails unless it then runs ``version``.

    Returns what serving said; skipped (with a line saying so) when serving is not up: it
    loads the champion when it starts.
    """
    import httpx

    url = f"{settings.serving_base_url}/reload"
    try:
        response = httpx.post(url, json={}, timeout=60)
    except httpx.TransportError as exc:
        message = (
            f"serving is not up at {url} ({type(exc).__name__}): skipping the reload; it "
            f"loads champion v{version} when it starts"
        )
        console.print(message)
        return message
    response.raise_for_status()
    body = response.json()
    console.print(f"POST {url} → {response.status_code}: {response.text}")
    if str(body.get("model_version")) != str(version):
        raise RuntimeError(
            f"serving still runs v{body.get('model_version')} after the reload, not v{version}:"
            f" {body.get('detail') or 'no detail'}; see `fraudlab logs serving`"
        )
    return f"serving runs v{version}"


def promote_challenger(settings: Settings) -> tuple[int, str]:
    """Run the promotion gates; the champion moves only when every gate passes.

    Returns (exit code, markdown gate report).
    """
    from pipelines import gates

    return gates.promote(settings, progress=step)


def rollback_champion(settings: Settings) -> tuple[int, str]:
    """Point the champion back at the previous champion; returns (exit code, what happened)."""
    from pipelines import gates

    return gates.rollback(settings)
