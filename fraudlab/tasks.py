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

from fraudlab.settings import Settings

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
        return True
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
    return True


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
    from pipelines import training

    return training.run(settings, promote=promote, progress=step)


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
