"""The world changed weeks ago; the champion was trained before it and never replaced.

inject:

1. T0, a midnight some weeks before the clock (fixed by the world's history, so one stale
   model serves every seed): from T0 on — history and the replayed future alike — the raw
   transactions change as the seed says (legitimate amounts grow, legitimate purchases move to
   other merchant categories, or a share of customers gets a new device fingerprint every
   day). Fraud, timestamps, users and chargebacks stay as they were.
2. The offline feature tables are rebuilt from the changed transactions and the batch views
   re-materialised from T0 to the clock, so the online store holds what the new world says.
3. The champion becomes a model trained as of T0 + label maturity, i.e. on data before T0 only:
   the last run of a retrain schedule that then stopped. It is trained once per world into the
   lab's cache (training's own stages with an earlier clock) and registered at every break; the
   previous champion alias is cleared, so there is nothing to roll back to.
4. A simulated day of the new traffic is fast-forwarded: the drift monitor (whole-day window,
   PSI against the stale model's training sample) alerts on the shifted inputs, and the stale
   model declines more good customers.

verify (outcomes):

- serving runs the champion;
- the champion was registered after the break and trained on a window that reaches at least a
  week past T0 (it has seen the new traffic);
- the promotion gates' own logic (``pipelines.gates.evaluate_gates``: quality, slices, parity,
  latency, data validation, leakage) passes for the champion against the model that served at
  break, on the freshest matured holdout — i.e. it is at least as good on recent labelled
  traffic. A model promoted without gates passes too if it would have passed them.

The drift monitor is not a verify check: the new champion's reference sample is its training
split, the oldest 70 % of a window that ends ``label_maturity_days`` before the clock, so it is
still half old world and the shifted columns may still warn or alert. INTERVIEWER.md discusses
it.

reset: nothing beyond the engine's baseline (raw data, tables, feature store, registry).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from lab import Check, ScenarioContext

NEW_DEVICE_BASE = 2_000_000_000  # rotated fingerprints: an id range no one else uses
MIN_DAYS_SEEN = 7  # days of the new traffic a fixed champion's training window must reach
FACTORS = {1: 1.8, 2: 2.6}  # basket_growth: legitimate amounts ×
MOVED = {1: 0.35, 2: 0.55}  # category_shift: share of legitimate purchases moved
ROTATING = {1: 0.3, 2: 0.6}  # device_churn: share of customers with a new fingerprint daily
TARGET_CATEGORIES = {"digital_goods": 0.5, "gift_cards": 0.3, "electronics": 0.2}
MAX_GENERATED_AMOUNT = 20_000.0


# --- the world before and after T0 -----------------------------------------------------------


def onset(ctx: ScenarioContext) -> pd.Timestamp:
    """T0: 40 % of the way into the days a retrain can train on (warm-up to label maturity),
    and at least eight days after the warm-up so that a model trained before it has a window."""
    warmup = ctx.training_warmup_days
    start = pd.Timestamp(ctx.world_meta()["start"])
    usable = ctx.settings.history_days - ctx.settings.label_maturity_days - warmup
    return start + pd.Timedelta(days=warmup + max(8, round(0.4 * usable)))


def _pick_merchants(
    rng: np.random.Generator, merchants: pd.DataFrame, categories: np.ndarray
) -> np.ndarray:
    out = np.empty(len(categories), dtype=np.int64)
    for name in np.unique(categories):
        mask = categories == name
        pool = merchants[merchants["merchant_category"] == name]
        weights = pool["popularity"].to_numpy()
        out[mask] = rng.choice(
            pool["merchant_id"].to_numpy(), mask.sum(), p=weights / weights.sum()
        )
    return out


def change_world(
    txns: pd.DataFrame,
    merchants: pd.DataFrame,
    t0: pd.Timestamp,
    shift: str,
    size: int,
    rng: np.random.Generator,
    category_amounts: tuple[np.ndarray, np.ndarray],
) -> pd.DataFrame:
    """The transactions with legitimate purchases from ``t0`` on changed by ``shift``; moved
    purchases get amounts from the world generator's ``category_amounts`` (log mean, sigma)."""
    from features.vocabulary import MERCHANT_CATEGORIES

    log_mean, log_sigma = category_amounts
    txns = txns.copy()
    rows = np.flatnonzero(
        (txns["event_timestamp"] >= t0).to_numpy() & (txns["is_fraud"].to_numpy() == 0)
    )
    amount = txns["amount"].to_numpy().copy()
    if shift == "basket_growth":
        amount[rows] = amount[rows] * FACTORS[size]
    elif shift == "category_shift":
        moved = rows[rng.random(len(rows)) < MOVED[size]]
        names = np.array(list(TARGET_CATEGORIES))
        categories = rng.choice(names, len(moved), p=list(TARGET_CATEGORIES.values()))
        merchant = txns["merchant_id"].to_numpy().copy()
        merchant[moved] = _pick_merchants(rng, merchants, categories)
        txns["merchant_id"] = merchant
        index = np.array([MERCHANT_CATEGORIES.index(c) for c in categories], dtype=int)
        amount[moved] = np.exp(rng.normal(log_mean[index], log_sigma[index]))
    elif shift == "device_churn":
        users = txns["user_id"].to_numpy()
        everyone = np.unique(users)
        rotating = everyone[rng.random(len(everyone)) < ROTATING[size]]
        churned = rows[np.isin(users[rows], rotating)]
        day = ((txns["event_timestamp"].iloc[churned] - t0) // pd.Timedelta(days=1)).to_numpy()
        device = txns["device_id"].to_numpy().copy()
        device[churned] = NEW_DEVICE_BASE + users[churned] * 1000 + day
        txns["device_id"] = device
    else:
        raise ValueError(f"unknown shift {shift!r}")
    txns["amount"] = np.round(np.clip(amount, 0.5, MAX_GENERATED_AMOUNT), 2)
    return txns


# --- the model from before T0 -----------------------------------------------------------------


def _cache_key(ctx: ScenarioContext, t0: pd.Timestamp) -> str:
    from features.transforms import TRANSFORM_VERSION

    world = ctx.world_meta()["transactions_hash"]
    return f"model-{world}-{t0:%Y%m%d}-{TRANSFORM_VERSION}-{ctx.settings.feature_service}"


def stale_run(ctx: ScenarioContext, t0: pd.Timestamp) -> Path:
    """A training run as of T0 + label maturity (its window ends at T0), built once with
    training's own stages and kept in the lab's cache (``ctx.keep_run``); returns the
    archive."""
    archive = ctx.cache_dir(_cache_key(ctx, t0)) / "artifact.hex"
    if archive.exists():
        return archive
    clock = t0 + pd.Timedelta(days=ctx.settings.label_maturity_days)
    ctx.train_and_keep_run(archive, reason="weekly", clock=clock)
    return archive


def register_stale(ctx: ScenarioContext, archive: Path) -> tuple[str, str]:
    """Register the cached run as the champion (unpacked among the stack's training runs, as
    the run that produced it left it); clear the aliases a rollback or promote would use."""
    source = ctx.unpack_run(archive, "run")
    directory = ctx.settings.training_dir / source.name
    if directory.exists():
        directory = ctx.settings.training_dir / f"{source.name}-{ctx.rng.randint(1000, 9999)}"
    ctx.settings.training_dir.mkdir(parents=True, exist_ok=True)
    shutil.move(str(source), directory)
    version = ctx.register_run(directory, champion=True)
    ctx.delete_aliases_except_champion()
    found = ctx.champion()
    assert found is not None and found[0] == version
    return found


# --- the verbs -------------------------------------------------------------------------------


def inject(ctx: ScenarioContext) -> None:
    if ctx.private.get("injected"):
        return
    settings = ctx.settings
    t0 = onset(ctx)
    clock = ctx.clock()
    if t0 + pd.Timedelta(days=MIN_DAYS_SEEN) > clock - pd.Timedelta(
        days=settings.label_maturity_days
    ):
        raise RuntimeError(f"too little history after {t0:%Y-%m-%d} for a retrain to see it")
    ctx.private["t0"] = t0.isoformat()
    ctx.private["ticket"] = f"PAY-{ctx.rng.randint(1200, 1999)}"
    cached = stale_run(ctx, t0)  # before the change: it reads only days before T0

    # the paced simulator holds the transactions it replays in memory: it restarts on the new ones
    was_running = ctx.stop_traffic()
    txns = ctx.read_raw("transactions")
    merchants = ctx.read_raw("merchants")
    changed = change_world(
        txns,
        merchants,
        t0,
        str(ctx.variant["shift"]),
        int(ctx.variant["size"]),
        np.random.default_rng(ctx.seed),
        ctx.category_amounts(),
    )
    ctx.write_raw("transactions", changed)
    rows = ctx.rebuild_feature_tables()
    views = ctx.rematerialise(t0)
    ctx.log(f"T0 {t0}: {ctx.variant.values()}; tables {rows}; re-materialised {views}")

    ctx.private["signature"] = world_signature(ctx, t0)
    version, run_id = register_stale(ctx, cached)
    ctx.private["stale_version"], ctx.private["stale_run"] = version, run_id
    ctx.private["registered_ms"] = int(pd.Timestamp.now(tz="UTC").timestamp() * 1000)
    ctx.reload_serving(version)
    ctx.fast_forward(24)
    if was_running:
        ctx.start_traffic()
    ctx.private["injected"] = True


def world_signature(ctx: ScenarioContext, t0: pd.Timestamp) -> str:
    """A hash of what the change rewrites (amounts, merchants, devices from T0 on)."""
    txns = ctx.read_raw("transactions")
    after = txns.loc[
        txns["event_timestamp"] >= t0, ["txn_id", "amount", "merchant_id", "device_id"]
    ]
    return ctx.data_hash(after.reset_index(drop=True))


def verify(ctx: ScenarioContext) -> list[Check]:
    settings = ctx.settings
    checks = []
    champion = ctx.champion_bundle()
    if champion is None:
        raise LookupError(f"model '{settings.model_name}' has no champion version")
    served = ctx.served_model_version()
    checks.append(
        Check(
            "serving runs the champion",
            served == champion.version,
            f"champion v{champion.version}, serving v{served}",
        )
    )
    stale, stale_run = ctx.private.get("stale_version"), ctx.private.get("stale_run")
    t0 = pd.Timestamp(ctx.private["t0"]) if ctx.private.get("t0") else None
    changed = t0 is not None and world_signature(ctx, t0) == ctx.private.get("signature")
    window = champion.spec["train_window"]
    registered = ctx.registry_client().get_model_version(settings.model_name, champion.version)
    after_break = int(registered.creation_timestamp) > int(ctx.private.get("registered_ms", 0))
    reaches = t0 is None or pd.Timestamp(window[1]) >= t0 + pd.Timedelta(days=MIN_DAYS_SEEN)
    current = champion.run_id != stale_run and (not changed or (after_break and reaches))
    checks.append(
        Check(
            "the champion was trained on data that includes the last weeks of traffic",
            current,
            f"champion v{champion.version} (run {champion.run_id}) trained on {window}, "
            f"registered {'after' if after_break else 'before'} the break; model at break "
            f"v{stale}; traffic {'changed' if changed else 'as at the baseline'} since {t0}",
        )
    )
    gates = "the champion passes the promotion gates against the model that served before"
    if not changed or not current:
        checks.append(
            Check(
                gates,
                not changed,
                "the traffic is as at the baseline: nothing to compare"
                if not changed
                else "the champion is not a model trained on the current traffic",
            )
        )
        return checks
    before = ctx.model_bundle(stale, stale_run)
    evidence = (registered.tags or {}).get("data_validation")
    report = ctx.gate_report(before, champion, evidence)
    failed = [f"{g['name']}: {g['summary']}" for g in report["gates"] if not g["passed"]]
    quality = next(g for g in report["gates"] if g["name"] == "quality")
    checks.append(
        Check(
            gates,
            report["passed"],
            "; ".join(failed) or f"all gates pass; {quality['summary']}",
        )
    )
    return checks


def reset(ctx: ScenarioContext) -> None:
    """Raw data, tables, the feature store and the registry are the baseline's to restore."""


# --- tests only ------------------------------------------------------------------------------

SHIFTED_INPUTS = {
    "basket_growth": ("amount_log", "amount_to_user_mean", "amount_to_merchant_mean"),
    "category_shift": ("merchant_category_code", "merchant_txn_count_7d", "amount_log"),
    "device_churn": ("is_new_device", "user_device_txn_count_30d"),
}


def symptom(ctx: ScenarioContext) -> list[Check]:
    result = ctx.run_drift_monitor()
    alerting = {c.column for c in result.columns if c.status == "alert"}
    expected = set(SHIFTED_INPUTS[str(ctx.variant["shift"])])
    return [
        Check(
            "the drift monitor alerts on the shifted inputs",
            result.status == "alert" and bool(alerting & expected),
            f"{result.status}: {sorted((c.column, c.psi) for c in result.columns if c.psi)}",
        )
    ]


def wrong_fix(ctx: ScenarioContext) -> None:
    """Silence the alert: a PSI alert threshold above anything the monitor reports."""
    result = ctx.run_drift_monitor()
    highest = max((c.psi or 0.0) for c in result.columns) if result.columns else 1.0
    ctx.fraudlab("config", "set", f"psi_alert={math.ceil(highest * 12) / 10}")


def reference_fix(ctx: ScenarioContext) -> None:
    """Undo the silenced alert, then the retrain DAG: training on the current window, gates
    against the champion, register, promote, reload serving."""
    ctx.fraudlab("config", "unset", "psi_alert")
    result = ctx.fraudlab("retrain", timeout=1800, check=False)
    ctx.log(result.stdout[-3000:] + result.stderr[-3000:])
    if result.returncode != 0:
        raise RuntimeError(f"make retrain failed:\n{result.stderr[-4000:]}")
