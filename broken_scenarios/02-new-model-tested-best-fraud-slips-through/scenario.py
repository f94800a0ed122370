"""An "improved" model went to production by hand; one of its inputs is only known in hindsight.

inject: a model trained on a feature service with one of the risk team's dispute tables
(``fraud_model_v2``: per user; ``fraud_model_v3``: per merchant — the seed picks) is registered
and made champion without the promotion gates, the way someone moving the alias by hand would
(the previous champion is kept as ``previous_champion``, as the promote code keeps it). The
tables attribute each dispute to the day of the purchase and their history was backfilled with
every chargeback known at the backfill, so on the training days the feature counts chargebacks
that arrived days after the decision — for a fraud, its own. Serving follows the alias; a day
of traffic is then replayed so that the monitors have a day of the new model's decisions.

The model is trained once per world into the lab's cache (a compressed archive, so nothing
readable there names it) and registered from it at every break: seconds, not a training run.

verify: the champion passes, on the fresh holdout ``fraudlab promote`` would build now, the
gates that judge a model on its own (leakage screen and ONNX parity: the code a challenger
faces), and serving answers with that champion. Outcomes only: a rollback, a retrained v1 model
or any other honest champion passes; another model trained on a leaky service does not.

reset: nothing beyond the baseline (aliases back, versions registered since deleted, serving
restarted); the cached model is kept for the next break.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from lab import Check, ScenarioContext

SERVICES = {"account_level": "fraud_model_v2", "merchant_level": "fraud_model_v3"}
REPLAY_HOURS = 24.0  # a day of decisions: the drift window is a day of event time
ARCHIVE = "artifact.hex"  # ctx.keep_run's archive
SERVING_FOLLOWS_S = 90.0


# --- helpers -----------------------------------------------------------------------------------


def _service(ctx: ScenarioContext) -> str:
    return SERVICES[str(ctx.variant["leak"])]


def _cache_key(ctx: ScenarioContext) -> str:
    """The cached model fits one world, one table layout and one transform."""
    from features.transforms import TRANSFORM_VERSION

    world = ctx.world_meta()["transactions_hash"]
    return f"model:{_service(ctx)}:{world}:{ctx.feature_tables_version}:{TRANSFORM_VERSION}"


def _train_into_cache(ctx: ScenarioContext, archive: Path) -> None:
    """Train on the variant's feature service (the training stages `fraudlab train` runs) and
    keep the run directory, minus its training set, as an archive."""
    ctx.train_and_keep_run(
        archive,
        reason="manual",
        overrides={"feature_service": _service(ctx)},
        keep_training_set=False,
    )


def _prebuilt_run(ctx: ScenarioContext) -> Path:
    """The pre-trained run directory, unpacked into the scratch space."""
    archive = ctx.cache_dir(_cache_key(ctx)) / ARCHIVE
    if not archive.exists():
        ctx.log(f"training the model once for this world ({_service(ctx)})")
        _train_into_cache(ctx, archive)
    return ctx.unpack_run(archive)


def _decisions(ctx: ScenarioContext) -> dict[str, float]:
    """Serving's decision counters (/metrics): cheap, and no request lands in the log."""
    import httpx

    text = httpx.get(f"{ctx.settings.serving_base_url}/metrics", timeout=10).text
    counts = {"approve": 0.0, "decline": 0.0}
    for line in text.splitlines():
        if line.startswith("fraudlab_scored_requests_total{"):
            labels, _, value = line.rpartition(" ")
            for decision in counts:
                if f'decision="{decision}"' in labels:
                    counts[decision] = float(value)
    return counts


def _test_metrics(ctx: ScenarioContext, version: str) -> dict[str, float]:
    mlflow = ctx.registry_client()
    run_id = mlflow.get_model_version(ctx.settings.model_name, version).run_id
    metrics = mlflow.get_run(run_id).data.metrics
    return {k.removeprefix("test_"): v for k, v in metrics.items() if k.startswith("test_")}


# --- the verbs ---------------------------------------------------------------------------------


def inject(ctx: ScenarioContext) -> None:
    if ctx.private.get("version"):
        return
    ctx.remember_history()
    run_directory = _prebuilt_run(ctx)
    try:
        version = ctx.register_run(run_directory)
    finally:
        shutil.rmtree(run_directory.parent, ignore_errors=True)  # MLflow holds it now
    previous = ctx.make_champion(version)  # the gates' own alias move, without the gates
    ctx.private.update(version=version, previous=previous)
    ctx.log(f"registered v{version} ({_service(ctx)}) and made it champion over v{previous}")
    ctx.serving_follows(version, SERVING_FOLLOWS_S)

    before = _decisions(ctx)
    ctx.fast_forward(REPLAY_HOURS)
    after = _decisions(ctx)
    declines = after["decline"] - before["decline"]
    scored = declines + after["approve"] - before["approve"]

    card, old = _test_metrics(ctx, version), _test_metrics(ctx, previous)
    # what the previous champion's own test split declined: its decisions at its threshold
    old_decline_share = old["recall"] * old["positives"] / max(old["precision"], 1e-9) / old["n"]
    ctx.private.update(
        ticket=f"FRAUD-{2000 + ctx.rng.randint(1, 899)}",
        declines=int(declines),
        scored=int(scored),
        decline_share=f"{declines / max(scored, 1):.2%}",
        old_decline_share=f"{old_decline_share:.2%}",
        card_pr_auc=f"{card['pr_auc']:.3f}",
        old_pr_auc=f"{old['pr_auc']:.3f}",
        card_precision=f"{card['precision']:.2f}",
        old_precision=f"{old['precision']:.2f}",
        service=_service(ctx),
    )
    ctx.log(
        f"replayed {REPLAY_HOURS:g} h: {int(declines)} declines in {int(scored)} scored "
        f"(previous champion's test split declined {old_decline_share:.2%})"
    )


def verify(ctx: ScenarioContext) -> list[Check]:
    bundle = ctx.champion_bundle()
    if bundle is None:
        return [Check("the registry names a model for production", False, "no champion alias")]
    screened = ctx.screen_model(bundle)
    served = ctx.served_model_version()
    return [
        Check(
            "the model in production passes, on a fresh holdout, the promotion gates a "
            "challenger must pass on its own",
            all(g.passed for g in screened),
            f"v{bundle.version} on {bundle.feature_service}: "
            + "; ".join(
                f"{g.name} {'PASS' if g.passed else 'FAIL'}: {g.summary}" for g in screened
            ),
        ),
        Check(
            "serving answers with the model the registry names for production",
            served == bundle.version,
            f"serving runs v{served}, champion is v{bundle.version}",
        ),
    ]


def reset(ctx: ScenarioContext) -> None:
    """The baseline restores aliases, versions, serving and data; what it does not keep —
    gate reports and MLflow runs written since the break — goes here."""
    ctx.forget_history()


# --- tests only --------------------------------------------------------------------------------


def symptom(ctx: ScenarioContext) -> list[Check]:
    """The stack's own records: the prediction log's decisions by the new champion decline far
    less than the previous model's test split did, and the champion's MLflow card beats its
    predecessor's. (The drift monitor's verdict depends on the world's size: see the notes.)"""
    version = ctx.private["version"]
    decisions = [
        r.decision
        for r in ctx.prediction_log(include_fallback=True)
        if str(r.model_version) == version
    ]
    live_share = decisions.count("decline") / max(len(decisions), 1)
    old_share = float(ctx.private["old_decline_share"].rstrip("%")) / 100
    champion = ctx.champion()
    card = _test_metrics(ctx, version)
    old = _test_metrics(ctx, ctx.private["previous"])
    return [
        Check(
            "the new champion's logged decisions decline far less than its predecessor's test "
            "split did",
            # at most half: in the contract's world (seed 3) the leak measured 0.40 of the old
            # share once training chose thresholds on expected cost (1038db2); the 0.35 here
            # before was tuned on the old threshold rule
            len(decisions) > 300 and live_share < 0.5 * old_share,
            f"{decisions.count('decline')} declines in {len(decisions)} ({live_share:.2%}) vs "
            f"{old_share:.2%}",
        ),
        Check(
            "the champion's model card beats its predecessor's (MLflow test metrics)",
            champion is not None and champion[0] == version and card["pr_auc"] > old["pr_auc"],
            f"PR-AUC {card['pr_auc']:.3f} vs {old['pr_auc']:.3f}",
        ),
    ]


def reference_fix(ctx: ScenarioContext) -> None:
    """`make rollback`, then serving picks the previous champion up."""
    ctx.fraudlab("rollback")
    ctx.serving_follows(ctx.champion()[0], SERVING_FOLLOWS_S)


def wrong_fix(ctx: ScenarioContext) -> None:
    """Retrain on the same feature service and make that the champion (fresher, still leaky)."""
    ctx.run(
        [sys.executable, "-m", "fraudlab.cli", "train"],
        env={**ctx.env(), "FRAUDLAB_FEATURE_SERVICE": _service(ctx)},
        timeout=600,
    )
    ctx.serving_follows(ctx.champion()[0], SERVING_FOLLOWS_S)
