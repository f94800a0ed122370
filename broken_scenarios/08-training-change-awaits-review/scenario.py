"""A teammate's training change waits for review; it hides three classic flaws.

inject: one commit on a new branch (plumbing only: no checkout, no index, ``git status`` stays
clean) that changes ``pipelines/training.py`` in three plausible ways, each with a reason in a
comment and each hiding one flaw, picked by the seed:

- fitting (``train``):       a statistic fitted on rows beyond the training days (segment weights
                             or the class weight from every row's label, or Platt calibration on
                             validation + test days);
- evaluation (``evaluate``): "test" metrics that include training rows (every row not used for
                             the threshold, the whole window, or slices over training + test);
- inputs (``model_matrix``): a missing feature column handled without an error (a reindex filling
                             0 or NaN columns before the new guard, or a guard covering only the
                             request columns, leaving the transform to default the rest).

verify: checks out the branch's last commit in a temporary worktree and runs hidden behavioural
checks (``review_checks.py``) against its stages on a small synthetic training set — outcomes,
not text: any fix that makes the stages behave passes. reset: deletes the branch and the lab's
worktrees; ``main`` and the candidate's other branches are never touched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lab import Check, ScenarioContext
from lab import git as lab_git

TARGET = "pipelines/training.py"
CHECKS_SCRIPT = "review_checks.py"
VERIFY_TIMEOUT_S = 300

# What verify reports, in order. Neutral: each names a stage and a contract, never a flaw.
CHECKS = {
    "runs": "the branch's train and evaluate stages run on a complete training set",
    "fitting": "train: fitting contract",
    "evaluation": "evaluate: evaluation contract",
    "inputs": "model_matrix: input contract",
}

AUTHORS = (
    lab_git.Person("Dana Whitfield", "dana.whitfield@fraudlab.example"),
    lab_git.Person("Ravi Menon", "ravi.menon@fraudlab.example"),
    lab_git.Person("Lena Fischer", "lena.fischer@fraudlab.example"),
    lab_git.Person("Tomás Ortega", "tomas.ortega@fraudlab.example"),
    lab_git.Person("Aiko Tanaka", "aiko.tanaka@fraudlab.example"),
)
BRANCHES = (
    "training/quality-improvements",
    "feature/steadier-training-metrics",
    "ml/training-tweaks",
    "training/robustness-and-weights",
    "feat/training-pipeline-polish",
)
REVIEWER = lab_git.Person("Reference Reviewer", "reviewer@fraudlab.example")

SEGMENTS = {
    "segment_weights_merchant": ("merchant_category", "merchant categories"),
    "segment_weights_region": ("home_region", "home regions"),
}


class ShapeError(RuntimeError):
    """The base training module no longer has the lines this change is written against."""


def replace_once(text: str, old: str, new: str, what: str) -> str:
    count = text.count(old)
    if count != 1:
        raise ShapeError(
            f"{TARGET}: expected the {what} exactly once, found it {count} times; the training "
            "module changed shape and this scenario's edits need updating"
        )
    return text.replace(old, new)


# --- the change under review -------------------------------------------------------------------

SEGMENT_WEIGHTS_FUNCTION = '''\
def segment_weights(frame: pd.DataFrame, column: str, smoothing: float = 50.0) -> np.ndarray:
    """Sample weights that up-weight fraud in segments where fraud is rare.

    A fraud's weight is the overall fraud rate over its segment's (smoothed) rate, at least 1:
    a fraud at a segment that rarely sees any counts for more. Legitimate rows weigh 1.
    """
    label = frame["label"].to_numpy()
    segment = frame[column].fillna("unknown")
    prior = float(label.mean())
    counts = frame.groupby(segment)["label"].agg(["sum", "count"])
    rate = (counts["sum"] + smoothing * prior) / (counts["count"] + smoothing)
    boost = (prior / rate).reindex(segment).to_numpy()
    return np.where(label == 1, np.maximum(boost, 1.0), 1.0)


'''
HELPERS_ANCHOR = "def single_row_latency_us("
# fit(): the end of its signature, and the training Dataset
FIT_SIGNATURE_END = "    num_boost_round: int = NUM_BOOST_ROUND,\n):\n"
FIT_DATASET = (
    "    train = lgb.Dataset(x_train, y_train, feature_name=feature_order, free_raw_data=False)\n"
)
# train(): the split masks, the fit call's parameters and end, the calibration
TRAIN_PARTS = "    parts = _parts(ts.frame)\n"
FIT_PARAMS = "        params=run.lgbm_params,\n"
FIT_CALL_END = "        num_boost_round=run.num_boost_round,\n    )\n"
CALIBRATION = """\
    raw_valid = booster.predict(ts.x[parts["valid"]], num_threads=1)
    calibration = export.fit_platt(raw_valid, y[parts["valid"]])
"""
HELD_OUT_CALIBRATION = """\
    # Calibrate on every held-out day rather than validation alone: twice the frauds, a
    # steadier fit.
    held_out = parts["valid"] | parts["test"]
    raw_held_out = booster.predict(ts.x[held_out], num_threads=1)
    calibration = export.fit_platt(raw_held_out, y[held_out])
"""
# evaluate(): the metrics loop and the slices
METRICS_START = "    metrics = {\n"
METRICS_LOOP = "        for name, mask in parts.items()\n"
EVALUATED_LOOP = "        for name, mask in evaluated.items()\n"
EVALUATED = {
    "held_out_union": (
        '    # "test" covers every row the threshold was not chosen on: more frauds than the\n'
        "    # last days alone hold, so PR-AUC stops jumping between runs.\n"
        '    evaluated = {**parts, "test": ~parts["valid"]}\n'
    ),
    "whole_window": (
        '    # One pass over the whole labelled window for "test": the last days alone hold too\n'
        "    # few frauds for a PR-AUC that means anything.\n"
        '    evaluated = {**parts, "test": np.ones(len(frame), dtype=bool)}\n'
    ),
}
SLICES_START = "    slices = evaluation.slice_metrics(\n"
SLICE_ROWS = "        slice_frame(frame[test], x[test], order, scores[test]),\n"
SLICED = (
    "    # Slices need frauds to mean anything and the test days hold few per category: slice\n"
    "    # over the training and test days together.\n"
    '    sliced = parts["train"] | parts["test"]\n'
)
SLICED_ROWS = "        slice_frame(frame[sliced], x[sliced], order, scores[sliced]),\n"
# model_matrix(): its definition and the first line of its body
MATRIX_DEF = "def model_matrix("
MATRIX_BODY = "    columns = {name: frame[name].to_numpy() for name in frame.columns}\n"
GUARD_ALL = (
    "    missing = [name for name in INPUT_COLUMNS if name not in frame.columns]\n"
    "    if missing:\n"
    '        raise KeyError(f"training frame lacks input columns {missing}")\n'
)
INPUT_PRELUDES = {
    "reindex": (
        "    # Training sets built through an older feature repository lack the newest views:\n"
        "    # align them to the full column set so every training set yields the same matrix.\n"
        "    frame = frame.reindex(\n"
        "        columns=list(dict.fromkeys([*frame.columns, *INPUT_COLUMNS])), fill_value=0\n"
        "    )\n"
    ),
    "assign_nan": (
        "    # A feature view the store does not serve yet arrives as no column at all: let the\n"
        "    # shared transform default it, exactly as serving does for a new entity.\n"
        "    absent = [name for name in STORED_FEATURES if name not in frame.columns]\n"
        "    frame = frame.assign(**dict.fromkeys(absent, np.nan))\n"
    ),
}
REQUEST_GUARD = (
    "    # Stored features can be absent for a new user or device (the transform defaults\n"
    "    # them); only the request columns are guaranteed, so insist on those.\n"
    "    missing = [name for name in REQUEST_COLUMNS if name not in frame.columns]\n"
    "    if missing:\n"
    '        raise KeyError(f"training frame lacks request columns {missing}")\n'
)
FIXED_GUARD_COMMENT = (
    "    # A missing column means the feature service changed: never train on a stand-in.\n"
)
INPUT_COLUMNS_DEF = (
    "# Every column the shared transform reads from a training frame.\n"
    "INPUT_COLUMNS = (*REQUEST_COLUMNS, *STORED_FEATURES)\n\n\n"
)
IMPORT = re.compile(r"^from features\.transforms import (\([^)]*\)|[^\n]*)\n", re.MULTILINE)


def add_transform_import(text: str, name: str) -> str:
    """Add ``name`` to the ``from features.transforms import ...`` statement, formatted the way
    ruff formats it (one line when it fits, else one name per line)."""
    match = IMPORT.search(text)
    if match is None:
        raise ShapeError(f"{TARGET}: no `from features.transforms import` statement")
    names = {n.strip() for n in match.group(1).strip("()").replace("\n", " ").split(",")}
    names = sorted((names - {""}) | {name}, key=lambda n: (not n.isupper(), n))
    line = f"from features.transforms import {', '.join(names)}\n"
    if len(line) > 100:
        line = (
            "from features.transforms import (\n" + "".join(f"    {n},\n" for n in names) + ")\n"
        )
    return text[: match.start()] + line + text[match.end() :]


def flawed_training(source: str, fitting: str, evaluation: str, inputs: str) -> str:
    """The branch's version of ``pipelines/training.py``, written against ``source`` (the base
    commit's): one flaw of each family, each with a plausible reason next to it."""
    text = source
    # -- fitting: train() ------------------------------------------------------------------------
    if fitting in SEGMENTS:
        column, plural = SEGMENTS[fitting]
        text = replace_once(
            text,
            TRAIN_PARTS,
            TRAIN_PARTS
            + f"    # Fraud is rarer in some {plural} than in others: up-weight it where it is\n"
            "    # rare, so the trees do not learn to ignore those segments.\n"
            f'    weights = segment_weights(ts.frame, "{column}")\n',
            "split masks in train()",
        )
        text = replace_once(
            text,
            FIT_CALL_END,
            FIT_CALL_END.removesuffix("    )\n")
            + '        weights=weights[parts["train"]],\n    )\n',
            "end of the fit call",
        )
        text = replace_once(
            text,
            FIT_SIGNATURE_END,
            FIT_SIGNATURE_END.removesuffix("):\n")
            + "    weights: np.ndarray | None = None,\n):\n",
            "fit signature",
        )
        text = replace_once(
            text,
            FIT_DATASET,
            "    train = lgb.Dataset(\n"
            "        x_train, y_train, weight=weights, feature_name=feature_order, "
            "free_raw_data=False\n    )\n",
            "training Dataset",
        )
        text = replace_once(
            text, HELPERS_ANCHOR, SEGMENT_WEIGHTS_FUNCTION + HELPERS_ANCHOR, "latency helper"
        )
    elif fitting == "class_weight":
        text = replace_once(
            text,
            TRAIN_PARTS,
            TRAIN_PARTS
            + "    # Up-weight fraud by the imbalance the data actually has, not a hand-picked\n"
            "    # constant.\n"
            "    pos_weight = float((y == 0).sum() / max(1, (y == 1).sum()))\n",
            "split masks in train()",
        )
        text = replace_once(
            text,
            FIT_PARAMS,
            '        params={**run.lgbm_params, "scale_pos_weight": pos_weight},\n',
            "fit parameters",
        )
    elif fitting == "calibration":
        text = replace_once(text, CALIBRATION, HELD_OUT_CALIBRATION, "calibration")
    else:
        raise ValueError(f"unknown fitting variant {fitting!r}")

    # -- evaluation: evaluate() ------------------------------------------------------------------
    if evaluation in EVALUATED:
        text = replace_once(
            text, METRICS_START, EVALUATED[evaluation] + METRICS_START, "metrics block"
        )
        text = replace_once(text, METRICS_LOOP, EVALUATED_LOOP, "metrics loop")
    elif evaluation == "slices_on_train":
        text = replace_once(text, SLICES_START, SLICED + SLICES_START, "slice block")
        text = replace_once(text, SLICE_ROWS, SLICED_ROWS, "slice rows")
    else:
        raise ValueError(f"unknown evaluation variant {evaluation!r}")

    # -- inputs: model_matrix() ------------------------------------------------------------------
    if inputs in INPUT_PRELUDES:
        text = replace_once(
            text, MATRIX_BODY, INPUT_PRELUDES[inputs] + GUARD_ALL + MATRIX_BODY, "model_matrix"
        )
        text = replace_once(text, MATRIX_DEF, INPUT_COLUMNS_DEF + MATRIX_DEF, "model_matrix")
        text = add_transform_import(text, "STORED_FEATURES")
    elif inputs == "request_only":
        text = replace_once(text, MATRIX_BODY, REQUEST_GUARD + MATRIX_BODY, "model_matrix")
    else:
        raise ValueError(f"unknown inputs variant {inputs!r}")
    return text


def fixed_training(
    flawed: str, fitting: str, evaluation: str, inputs: str, wrong: bool = False
) -> str:
    """The branch after review: each flaw repaired (the reference fix), or — ``wrong`` — a
    plausible but insufficient repair of the fitting flaw, the other two repaired."""
    text = flawed
    if fitting in SEGMENTS:
        column = SEGMENTS[fitting][0]
        rows = '~parts["test"]' if wrong else 'parts["train"]'
        text = replace_once(
            text,
            f'    weights = segment_weights(ts.frame, "{column}")\n',
            f'    weights = segment_weights(ts.frame[{rows}], "{column}")\n',
            "segment weights",
        )
        text = replace_once(
            text,
            '        weights=weights[parts["train"]],\n',
            '        weights=weights[parts["train"][~parts["test"]]],\n'
            if wrong
            else "        weights=weights,\n",
            "weights argument",
        )
    elif fitting == "class_weight":
        rows = '~parts["test"]' if wrong else 'parts["train"]'
        text = replace_once(
            text,
            "    pos_weight = float((y == 0).sum() / max(1, (y == 1).sum()))\n",
            f"    fit_labels = y[{rows}]\n"
            "    pos_weight = float((fit_labels == 0).sum() / max(1, (fit_labels == 1).sum()))\n",
            "class weight",
        )
    elif fitting == "calibration" and not wrong:
        text = replace_once(text, HELD_OUT_CALIBRATION, CALIBRATION, "calibration")

    if evaluation in EVALUATED:
        text = replace_once(text, EVALUATED[evaluation], "", "evaluated masks")
        text = replace_once(text, EVALUATED_LOOP, METRICS_LOOP, "metrics loop")
    elif evaluation == "slices_on_train":
        text = replace_once(text, SLICED, "", "sliced rows")
        text = replace_once(text, SLICED_ROWS, SLICE_ROWS, "slice rows")

    if inputs in INPUT_PRELUDES:
        text = replace_once(text, INPUT_PRELUDES[inputs], FIXED_GUARD_COMMENT, "input prelude")
    elif inputs == "request_only":
        text = replace_once(
            text,
            REQUEST_GUARD,
            FIXED_GUARD_COMMENT + "    required = (*REQUEST_COLUMNS, *STORED_FEATURES)\n"
            "    missing = [name for name in required if name not in frame.columns]\n"
            "    if missing:\n"
            '        raise KeyError(f"training frame lacks input columns {missing}")\n',
            "request guard",
        )
        text = add_transform_import(text, "STORED_FEATURES")
    return text


# --- cosmetics: who wrote it, what they called it ------------------------------------------------

FITTING_PURPOSE = {
    "segment_weights_merchant": (
        "up-weight fraud in quiet merchant categories",
        (
            "- fraud in merchant categories that rarely see any gets more weight, so the trees stop "
            "ignoring them"
        ),
    ),
    "segment_weights_region": (
        "up-weight fraud in quiet regions",
        (
            "- fraud in home regions that rarely see any gets more weight, so the trees stop "
            "ignoring them"
        ),
    ),
    "class_weight": (
        "fraud weight from the data",
        "- the fraud weight follows the imbalance the data has instead of a hand-picked 10",
    ),
    "calibration": (
        "steadier calibration",
        "- Platt calibration sees every held-out day: twice the frauds, a steadier fit",
    ),
}
EVALUATION_PURPOSE = {
    "held_out_union": "- steadier test metrics: more frauds behind the test PR-AUC",
    "whole_window": "- steadier test metrics: one evaluation pass with more frauds behind it",
    "slices_on_train": "- slice metrics with enough frauds per slice to mean something",
}
INPUTS_PURPOSE = {
    "reindex": "- training sets built through an older feature repository work again",
    "request_only": "- model_matrix checks its input columns up front",
    "assign_nan": "- model_matrix copes with a feature view the store does not serve yet",
}


def commit_message(fitting: str, evaluation: str, inputs: str) -> tuple[str, str]:
    subject = f"training: {FITTING_PURPOSE[fitting][0]}, steadier evaluation, input checks"
    body = "\n".join(
        [FITTING_PURPOSE[fitting][1], EVALUATION_PURPOSE[evaluation], INPUTS_PURPOSE[inputs]]
    )
    return subject, f"{subject}\n\n{body}\n"


def _forms(ctx: ScenarioContext) -> tuple[str, str, str]:
    return str(ctx.variant["fitting"]), str(ctx.variant["evaluation"]), str(ctx.variant["inputs"])


# --- the scenario contract -----------------------------------------------------------------------


def review_base_ready(ctx: ScenarioContext) -> Check:
    """Steady state: the checked-out training module is one this change can be written on."""
    head = ctx.git("rev-parse", "HEAD").stdout.strip()
    source = ctx.git("show", f"{head}:{TARGET}").stdout
    try:
        flawed_training(source, *_forms(ctx))
    except ShapeError as exc:
        return Check(
            "the training pipeline has the shape the review is written on", False, str(exc)
        )
    return Check("the training pipeline has the shape the review is written on", True)


def inject(ctx: ScenarioContext) -> None:
    branch = ctx.private.get("branch")
    if branch and lab_git.branch_tip(ctx, branch):
        return  # already injected: break twice changes nothing
    base = ctx.git("rev-parse", "HEAD").stdout.strip()
    on_branch = ctx.git("symbolic-ref", "--short", "-q", "HEAD", check=False).stdout.strip()
    author = ctx.rng.choice(AUTHORS)
    branch = ctx.rng.choice(BRANCHES)
    if lab_git.branch_tip(ctx, branch):
        # a name someone already uses: never move their branch
        branch = f"{branch}-{ctx.rng.randint(2, 9)}"
    flawed = flawed_training(ctx.git("show", f"{base}:{TARGET}").stdout, *_forms(ctx))
    subject, message = commit_message(*_forms(ctx))
    base_time = int(ctx.git("show", "-s", "--format=%ct", base).stdout.strip())
    when = max(
        datetime.fromtimestamp(base_time + 600, UTC),
        datetime.now(UTC) - timedelta(minutes=ctx.rng.randint(45, 300)),
    )
    commit = lab_git.commit_files(ctx, base, {TARGET: flawed}, message, author, when)
    lab_git.create_branch(ctx, branch, commit)
    ctx.private.update(
        branch=branch,
        base=base,
        restore_to=on_branch or base,
        commit=commit,
        author=author.name,
        subject=subject,
    )
    ctx.log(f"review branch {branch} at {commit[:10]} on {base[:10]}")


def _checks_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FRAUDLAB_", "GIT_"))}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("PYTHONPATH", None)  # the checkout's own packages come first (sys.path[0] = cwd)
    return env


def verify(ctx: ScenarioContext) -> list[Check]:
    branch = ctx.private.get("branch", "")
    tip = lab_git.branch_tip(ctx, branch) if branch else None
    if tip is None:
        return [Check("the review branch exists", False, f"no branch {branch!r}")] + [
            Check(description, False, "no branch to check") for description in CHECKS.values()
        ]
    script = ctx.resource(CHECKS_SCRIPT).decode()
    with lab_git.detached_worktree(ctx, tip) as tree:
        result = ctx.run(
            [sys.executable, "-"],
            cwd=tree,
            env=_checks_environment(),
            input=script,
            timeout=VERIFY_TIMEOUT_S,
            check=False,
        )
    lines = result.stdout.strip().splitlines()
    try:
        verdicts = json.loads(lines[-1])
    except (IndexError, ValueError):
        failure = f"exit {result.returncode}\n{result.stderr[-3000:]}"
        return [Check("the review branch exists", True)] + [
            Check(description, False, failure) for description in CHECKS.values()
        ]
    checks = [Check("the review branch exists", True, f"judged commit {tip[:10]}")]
    for name, description in CHECKS.items():
        verdict = verdicts.get(name, {"ok": False, "detail": "not run"})
        checks.append(Check(description, bool(verdict["ok"]), str(verdict.get("detail", ""))))
    return checks


def reset(ctx: ScenarioContext) -> None:
    lab_git.remove_lab_worktrees(ctx)
    branch = ctx.private.get("branch")
    if not branch:
        return
    saved = lab_git.delete_branch(
        ctx, branch, base=ctx.private["base"], restore_to=ctx.private["restore_to"]
    )
    for patch in saved:
        ctx.log(f"uncommitted work on the review branch saved to {patch}")


# --- for tests/scenarios only ----------------------------------------------------------------------


def symptom(ctx: ScenarioContext) -> list[Check]:
    """What a reviewer sees with the project's own tools: one commit on the branch, touching
    only the training module, importable, lint- and format-clean (CI would wave it through)."""
    branch, base = ctx.private["branch"], ctx.private["base"]
    commits = ctx.git("rev-list", f"{base}..{branch}").stdout.split()
    changed = ctx.git("diff", "--name-only", f"{base}...{branch}").stdout.split()
    checks = [
        Check("the branch holds one commit over its base", len(commits) == 1, str(commits)),
        Check("the commit changes the training module only", changed == [TARGET], str(changed)),
    ]
    with lab_git.detached_worktree(ctx, branch) as tree:
        imported = ctx.run(
            [sys.executable, "-c", "import pipelines.training"],
            cwd=tree,
            env=_checks_environment(),
            check=False,
        )
        checks.append(
            Check(
                "the branch's training module imports", imported.returncode == 0, imported.stderr
            )
        )
        ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
        if Path(ruff).exists():
            lint = ctx.run([ruff, "check", "--no-cache", TARGET], cwd=tree, check=False)
            form = ctx.run(
                [ruff, "format", "--check", "--no-cache", TARGET], cwd=tree, check=False
            )
            checks.append(
                Check(
                    "the change is lint- and format-clean",
                    lint.returncode == 0 and form.returncode == 0,
                    lint.stdout + form.stdout,
                )
            )
    return checks


def _apply_review(ctx: ScenarioContext, wrong: bool) -> str:
    flawed = ctx.git("show", f"{ctx.private['commit']}:{TARGET}").stdout
    fixed = fixed_training(flawed, *_forms(ctx), wrong=wrong)
    message = "review: address comments" if wrong else "review: fix issues found in review"
    return lab_git.commit_on_branch(ctx, ctx.private["branch"], {TARGET: fixed}, message, REVIEWER)


def reference_fix(ctx: ScenarioContext) -> None:
    """Commit the reference fix on the branch, as a candidate would (worktree, edit, commit)."""
    _apply_review(ctx, wrong=False)


def wrong_fix(ctx: ScenarioContext) -> None:
    """Commit a plausible but insufficient fix: the fitting statistic still sees held-out
    labels (``~test`` instead of the training days), or the calibration is left alone."""
    _apply_review(ctx, wrong=True)
