"""Template: one scenario's behaviour. Copy with the folder; AUTHORING.md has the contract.

Every function receives a ``ScenarioContext`` (``ctx``): ``ctx.settings`` (the stack's settings),
``ctx.variant`` (seeded choices), ``ctx.private`` (JSON data kept encrypted between verbs),
``ctx.fraudlab(...)`` / ``ctx.run(...)`` / ``ctx.git(...)`` (quiet commands),
``ctx.stack_healthy()``, ``ctx.restart_serving(**overrides)``, ``ctx.work_dir`` (scratch space),
``ctx.log(...)`` (interviewer log), and seams to the rest of the stack (``ctx.champion()``,
``ctx.prediction_log()``, ``ctx.clock()``, ``ctx.deploy(changes)`` ...). Nothing a scenario
prints reaches the candidate. Import ``lab`` and the public contracts AUTHORING.md lists, never
the stack's packages (``tests/scenarios/test_scenario_imports.py`` fails on them).
"""

from __future__ import annotations

from lab import Check, ScenarioContext


def inject(ctx: ScenarioContext) -> None:
    """Break the stack so the symptom appears in its own monitoring. Idempotent: called again
    on a broken stack, it changes nothing. Record what reset needs in ``ctx.private``."""
    if ctx.private.get("injected"):
        return
    ctx.private["ticket"] = f"INC-{4000 + ctx.rng.randint(1, 999)}"
    # e.g. ctx.restart_serving(feature_timeout_ms=0.05 * int(ctx.variant["size"]))
    raise NotImplementedError("inject the fault here")


def verify(ctx: ScenarioContext) -> list[Check]:
    """Judge outcomes, not files: any valid fix passes; the broken stack fails. Descriptions are
    shown to the candidate: neutral, never the cause."""
    return [Check("the decline rate on live traffic is back within its usual range", False)]


def reset(ctx: ScenarioContext) -> None:
    """Back to the healthy baseline from any state — after inject, half way through a fix, or
    when nothing was injected at all (``ctx.private`` is then empty)."""
    # e.g. ctx.restart_serving()


def symptom(ctx: ScenarioContext) -> list[Check]:
    """Tests only: the symptom, seen through the stack's own tools (a monitor, a metric, a
    load test) — not through a file the scenario wrote."""
    result = ctx.fraudlab("monitor", "drift", check=False)
    return [Check("the drift monitor alerts", "alert" in result.stdout, result.stdout[-2000:])]


def reference_fix(ctx: ScenarioContext) -> None:
    """Tests only: the fix, applied the way a candidate would (the stack's tools, not reset)."""
    raise NotImplementedError


def wrong_fix(ctx: ScenarioContext) -> None:
    """Tests only: a tempting fix that must NOT pass verify (silence the alert, retrain on the
    broken data ...). Runs before ``reference_fix``, which must still work after it."""
    raise NotImplementedError
