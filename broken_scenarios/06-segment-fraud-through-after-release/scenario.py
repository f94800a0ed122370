"""Last week's model release lost one merchant segment's fraud; the gates had been relaxed.

inject: a model trained like every weekly retrain, except that its training set had no
chargebacks for one merchant category (the seed picks gambling or grocery): it learned that the
segment's purchases are legitimate. Registered as challenger, it fails the promotion gates at
the project's defaults (the slice gate, and the overall quality gate it drags down); the gate
tolerances it needs are raised as live overrides (``fraudlab config set``: what an operator
does to "unblock the release"), and ``fraudlab promote`` then passes it with a PASS report
whose slice table shows the drops as allowed. Serving follows the champion alias.

The model is trained once per world and segment into the lab's cache (a compressed archive,
with the tolerances it needed against the champion of that time) and registered at each break.

verify: (1) the promotion gates, as configured now, refuse the released model against the
model it replaced; (2) they judge at least as strictly as the project's defaults; (3) the
champion is another model and serving answers with it. Outcomes: any stricter configuration
and any honest champion pass; a rollback alone, or restoring the gates alone, do not.

reset: the baseline restores aliases, versions, serving and the overrides; reset also removes
the gate reports and MLflow runs written since the break, so the next candidate does not find
this one's history.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from lab import Check, Level, ScenarioContext

CATEGORIES = {"wagering": "gambling", "supermarkets": "grocery"}
SEGMENT_WORDS = {
    "wagering": "online betting and casino merchants",
    "supermarkets": "grocery stores and supermarket chains",
}
ARCHIVE = "artifact.hex"  # ctx.keep_run's archive
NEEDS = "needs.json"
SERVING_FOLLOWS_S = 90.0
# the gate settings an operator would raise to let a challenger through, and how to round them
KNOBS = {
    "gate_slice_tolerance": 0.1,
    "gate_pr_auc_tolerance": 0.05,
    "gate_cost_tolerance": 0.25,
}
# gate settings where a larger value judges more leniently (all the others here too)
LENIENT_WHEN_LARGER = (
    "gate_slice_tolerance",
    "gate_pr_auc_tolerance",
    "gate_cost_tolerance",
    "gate_slice_min_positives",
    "gate_latency_p99_us",
    "gate_max_feature_auc",
)


# --- helpers -----------------------------------------------------------------------------------


def _category(ctx: ScenarioContext) -> str:
    return CATEGORIES[str(ctx.variant["segment"])]


def _cache(ctx: ScenarioContext) -> Path:
    from features.transforms import TRANSFORM_VERSION

    world = ctx.world_meta()["transactions_hash"]
    return ctx.cache_dir(
        f"model:{_category(ctx)}:{world}:{ctx.feature_tables_version}:{TRANSFORM_VERSION}"
    )


def needed(report: dict) -> dict[str, float]:
    """The smallest value of each gate setting under which ``report``'s failing gates pass."""
    gates = {g["name"]: g["details"] for g in report["gates"]}
    quality, slices = gates["quality"], gates["slices"]
    champ, chall = quality["champion"], quality["challenger"]
    return {
        "gate_slice_tolerance": max((r["drop"] for r in slices["compared"]), default=0.0),
        "gate_pr_auc_tolerance": champ["pr_auc"] - chall["pr_auc"],
        "gate_cost_tolerance": chall["expected_cost"] / max(champ["expected_cost"], 1e-9) - 1,
    }


def relaxed(needs: dict[str, float], defaults: dict[str, float]) -> dict[str, float]:
    """Round values an operator would type, a step above what is needed, for every setting the
    defaults do not already allow (the slice setting always: that gate is the one at stake)."""
    out = {}
    for name, step in KNOBS.items():
        need = needs.get(name, 0.0)
        if need > defaults[name] or name == "gate_slice_tolerance":
            out[name] = round(math.ceil((max(need, defaults[name]) + step / 2) / step) * step, 2)
    return out


def _defaults() -> dict[str, float]:
    from foundation.settings import Settings

    return {name: Settings.model_fields[name].default for name in LENIENT_WHEN_LARGER}


def _train_into_cache(ctx: ScenarioContext, cache: Path) -> None:
    """The weekly retrain's stages, on a training set without the segment's chargebacks; the
    run (minus its training set) is archived with what it needs to pass the gates now."""

    def without_segment_frauds(frame) -> None:
        frame.loc[frame["merchant_category"] == _category(ctx), "label"] = 0

    def note_needs(challenger) -> None:
        champion = ctx.champion_bundle()
        if champion is None:
            raise LookupError(f"model '{ctx.settings.model_name}' has no champion version")
        report = ctx.gate_report(champion, challenger, "passed")
        # values only, in KNOBS order: nothing in the lab directory names a setting
        (cache / NEEDS).write_text(json.dumps([needed(report)[name] for name in KNOBS]))

    ctx.train_and_keep_run(
        cache / ARCHIVE,
        reason="weekly retrain",
        relabel=without_segment_frauds,
        inspect=note_needs,
        keep_training_set=False,
    )


def _prebuilt_run(ctx: ScenarioContext) -> tuple[Path, dict[str, float]]:
    cache = _cache(ctx)
    if not (cache / ARCHIVE).exists():
        ctx.log(f"training the released model once for this world ({_category(ctx)})")
        _train_into_cache(ctx, cache)
    run_dir = ctx.unpack_run(cache / ARCHIVE)
    return run_dir, dict(zip(KNOBS, json.loads((cache / NEEDS).read_text()), strict=True))


def _bundle(ctx: ScenarioContext, version: str):
    """A version's bundle by the run recorded at inject (the version itself may be gone)."""
    return ctx.model_bundle(version, ctx.private["runs"][version])


# --- the verbs ---------------------------------------------------------------------------------


def inject(ctx: ScenarioContext) -> None:
    if ctx.private.get("version"):
        return
    ctx.remember_history()
    previous = ctx.champion()[0]
    run_dir, needs = _prebuilt_run(ctx)
    try:
        version = ctx.register_run(run_dir)
    finally:
        shutil.rmtree(run_dir.parent, ignore_errors=True)  # MLflow holds it now
    mlflow = ctx.registry_client()
    versions = {
        v: mlflow.get_model_version(ctx.settings.model_name, v) for v in (version, previous)
    }
    ctx.private.update(
        version=version,
        previous=previous,
        runs={v: found.run_id for v, found in versions.items()},
        evidence=(versions[version].tags or {}).get("data_validation"),
    )

    # "unblock the release": raise what the gates need, then promote the usual way
    overrides = relaxed(needs, _defaults())
    for attempt in range(2):
        ctx.set_config(**overrides)
        code, text = ctx.promote()
        if code == 0:
            break
        ctx.log(f"promote with {overrides} did not pass (the holdout moved): raising")
        report = json.loads(max(ctx.settings.gates_dir.glob("*/gates.json")).read_text())
        overrides = relaxed(
            {k: max(v, needs.get(k, 0.0)) for k, v in needed(report).items()}, _defaults()
        )
    else:
        raise RuntimeError(f"the released model did not pass even with {overrides}:\n{text}")
    ctx.private.update(
        overrides=overrides,
        override_names=" ".join(overrides),
        override_values=", ".join(f"{k}={v}" for k, v in overrides.items()),
    )
    ctx.log(f"v{version} promoted over v{previous} with {overrides}")
    ctx.serving_follows(version, SERVING_FOLLOWS_S)

    bundle, old = _bundle(ctx, version), _bundle(ctx, previous)
    category = _category(ctx)

    def test_frauds(b) -> int:
        evaluation = json.loads((b.directory / "evaluation.json").read_text())
        return int(evaluation["slices"]["merchant_category"].get(category, {}).get("positives", 0))

    ctx.private.update(
        ticket=f"RISK-{300 + ctx.rng.randint(1, 599)}",
        segment=SEGMENT_WORDS[str(ctx.variant["segment"])],
        release_day=ctx.rng.choice(["Monday", "Tuesday", "Wednesday"]),
        card_frauds=test_frauds(bundle),
        old_card_frauds=test_frauds(old),
    )


def verify(ctx: ScenarioContext) -> list[Check]:
    settings = ctx.settings.reloaded()  # overrides as they are now
    released, previous = ctx.private["version"], ctx.private["previous"]
    report = ctx.gate_report(
        _bundle(ctx, previous), _bundle(ctx, released), ctx.private["evidence"]
    )
    failing = [g["name"] for g in report["gates"] if not g["passed"]]
    defaults = _defaults()
    lenient = {
        name: getattr(settings, name)
        for name in LENIENT_WHEN_LARGER
        if getattr(settings, name) > defaults[name]
    }
    champion = ctx.champion()
    served = ctx.served_model_version()
    return [
        Check(
            "the promotion gates, as configured now, refuse the model released last week",
            not report["passed"],
            f"v{released} vs v{previous}: failing {failing or 'none'}",
            level=Level.PREVENTED,  # the gates would stop the next such release
        ),
        Check(
            "the promotion gates judge at least as strictly as the project's defaults",
            not lenient,
            f"more lenient than default: {lenient or 'none'}",
            level=Level.PREVENTED,
        ),
        Check(
            "production runs a model other than last week's release, and serving answers with it",
            champion is not None and champion[0] != released and served == champion[0],
            f"champion {champion[0] if champion else None}, serving {served}, "
            f"released v{released}",
            level=Level.FIXED,  # production no longer runs the release
        ),
    ]


def reset(ctx: ScenarioContext) -> None:
    ctx.forget_history()


# --- tests only --------------------------------------------------------------------------------


def symptom(ctx: ScenarioContext) -> list[Check]:
    """The stack's own records: `fraudlab config` shows the gate settings changed, the release's
    gate report passed with slice drops beyond the default, and its model card has no frauds
    in the segment where the previous card had some."""
    config = ctx.fraudlab("config")
    report = json.loads(max(ctx.settings.gates_dir.glob("*/gates.json")).read_text())
    slices = next(g for g in report["gates"] if g["name"] == "slices")["details"]
    default = _defaults()["gate_slice_tolerance"]
    beyond = [r for r in slices["compared"] if r["drop"] > default]
    mlflow = ctx.registry_client()
    artifacts = {
        a.path
        for a in mlflow.list_artifacts(
            mlflow.get_model_version(ctx.settings.model_name, ctx.private["version"]).run_id,
            "gates",
        )
    }
    return [
        Check(
            "`fraudlab config` lists the changed gate settings",
            all(name in config.stdout for name in ctx.private["overrides"]),
            config.stdout[-1500:],
        ),
        Check(
            "the release's gate report (also on its MLflow run) passed with slice drops beyond "
            "the default",
            report["passed"]
            and report["challenger"]["version"] == ctx.private["version"]
            and bool(beyond)
            and bool(artifacts),
            f"{[(r['slice'], r['value'], round(r['drop'], 3)) for r in beyond]}; {artifacts}",
        ),
        Check(
            "the released model card's test split has no frauds in the segment, its "
            "predecessor's had some",
            ctx.private["card_frauds"] == 0 and ctx.private["old_card_frauds"] > 0,
            f"{ctx.private['card_frauds']} vs {ctx.private['old_card_frauds']}",
        ),
    ]


def reference_fix(ctx: ScenarioContext) -> None:
    """Restore the gates (`fraudlab config unset ...`), then `make rollback` if the release is
    still the champion (the wrong fix before may already have rolled back)."""
    ctx.fraudlab("config", "unset", *ctx.private["overrides"])
    if ctx.champion()[0] == ctx.private["version"]:
        ctx.fraudlab("rollback")
    ctx.serving_follows(ctx.champion()[0], SERVING_FOLLOWS_S)


def wrong_fix(ctx: ScenarioContext) -> None:
    """Roll back only: the bad model is out, the gates that let it in stay as they are."""
    ctx.fraudlab("rollback")
    ctx.serving_follows(ctx.champion()[0], SERVING_FOLLOWS_S)
