"""The contract every scenario keeps, run for real on every scenario of the catalogue.

healthy → reset without break is harmless → break (ticket only, git status clean, nothing in the
lab directory names the scenario) → the symptom shows with the stack's own tools → verify fails
(and names nothing) → break again is harmless → a wrong fix does not pass → the reference fix,
applied the way a candidate would, passes → reset → healthy baseline again (code reviews: the
repository exactly as before; incidents: verify passes on the restored stack).

Break, verify and reset must each take under a minute (SPEC: "Performance"); their times are
printed at the end of the session.
"""

from __future__ import annotations

import re
import time

import pytest

from foundation.settings import REPO_ROOT
from lab.catalogue import Catalogue, catalogue_root
from lab.manifest import Kind
from tests.scenarios.conftest import TIMINGS

SEED = 3
BUDGET_S = 60.0
SCENARIOS = Catalogue(catalogue_root(REPO_ROOT)).scenarios()


def params():
    for scenario in SCENARIOS:
        marks = [pytest.mark.slow]
        if scenario.manifest.kind == Kind.INCIDENT:
            marks.append(pytest.mark.integration)
        yield pytest.param(scenario.folder.name, marks=marks, id=scenario.folder.name)


def tells_of(scenario, variant) -> list[str]:
    """Strings that must never reach the candidate: names, title, cause words, variant values."""
    words = [scenario.folder.name, scenario.manifest.title, *scenario.manifest.tells]
    words += [str(v) for v in variant.values().values() if isinstance(v, str) and len(v) >= 4]
    return words


def assert_hidden(text: str, tells: list[str], scenario_id: str) -> None:
    lowered = text.lower()
    for tell in tells:
        assert tell.lower() not in lowered, f"{tell!r} reaches the candidate:\n{text}"
    for pattern in (rf"\bS={scenario_id}\b", rf"scenario {scenario_id}\b", rf"#{scenario_id}\b"):
        assert not re.search(pattern, text), f"{pattern} reaches the candidate:\n{text}"


def timed(times: dict[str, float], verb: str, action):
    started = time.monotonic()
    result = action()
    times[verb] = max(times.get(verb, 0.0), time.monotonic() - started)
    return result


def lab_files_text(env) -> str:
    """Everything readable in the lab's state directory, except the scratch checkouts and the
    baseline snapshot: the latter is the engine's copy of the stack's own data (compressed
    parquet, SQLite), which holds nothing a scenario wrote and, being binary, matches the
    patterns below by chance (``#03`` occurs in the small world's feature tables)."""
    root = env.lab.store.root
    parts = []
    for path in root.rglob("*"):
        if {"work", "baseline"} & set(path.relative_to(root).parts):
            continue
        parts.append(path.name)
        if path.is_file():
            parts.append(path.read_bytes().decode(errors="replace"))
    return "\n".join(parts)


@pytest.mark.parametrize("folder", list(params()))
def test_scenario_contract(folder: str, request) -> None:
    kind = next(s for s in SCENARIOS if s.folder.name == folder).manifest.kind
    env = request.getfixturevalue("review_lab" if kind == Kind.CODE_REVIEW else "incident_lab")
    lab = env.lab
    scenario, module, fresh = lab.fresh_context(folder, SEED)
    tells = tells_of(scenario, fresh.variant)
    times: dict[str, float] = {}
    TIMINGS[folder] = times

    # healthy, and reset without break is harmless (the engine's and the scenario's own)
    assert all(c.ok for c in lab.steady_state(scenario, module, fresh))
    before = env.snapshot()
    assert lab.reset() == "no scenario is active: nothing to reset"
    module.reset(fresh)
    assert all(c.ok for c in lab.steady_state(scenario, module, fresh))
    assert env.snapshot() == before

    # break: the ticket and nothing else; nothing readable names the scenario
    ticket = timed(times, "break", lambda: lab.break_(scenario.id, seed=SEED))
    assert ticket.strip()
    assert_hidden(ticket, tells, scenario.id)
    assert env.snapshot().status == before.status, "break left the working tree dirty"
    assert_hidden(lab_files_text(env), tells, scenario.id)
    assert_hidden(lab.status_line() or "", tells, scenario.id)

    # the symptom is visible with the stack's own tools
    _, module, ctx = lab.active_context()
    for check in module.symptom(ctx):
        assert check.ok, f"symptom not visible: {check.description}: {check.detail}"

    # verify fails, neutrally
    checks = timed(times, "verify", lab.verify)
    assert not all(c.ok for c in checks), "verify passes on the broken stack"
    assert_hidden("\n".join(c.description for c in checks), tells, scenario.id)

    # break twice is harmless
    assert timed(times, "break", lambda: lab.break_(scenario.id, seed=SEED)) == ticket
    assert not all(c.ok for c in lab.verify())

    # a wrong fix does not pass
    module.wrong_fix(ctx)
    checks = timed(times, "verify", lab.verify)
    assert not all(c.ok for c in checks), "a wrong fix passes verify"

    # the reference fix, applied the way a candidate would, passes
    module.reference_fix(ctx)
    checks = timed(times, "verify", lab.verify)
    failing = [f"{c.description}: {c.detail}" for c in checks if not c.ok]
    assert not failing, f"the reference fix does not pass verify: {failing}"

    # reset: back to the healthy baseline
    message = timed(times, "reset", lab.reset)
    assert message.startswith("reset: healthy baseline verified"), message
    assert not lab.store.active()
    scenario, module, after = lab.fresh_context(folder, SEED)
    assert all(c.ok for c in lab.steady_state(scenario, module, after))
    if kind == Kind.CODE_REVIEW:
        assert env.snapshot() == before, "reset did not restore the repository"
    else:
        after.private.update(ctx.private)  # what inject recorded, for verify to compare with
        assert all(c.ok for c in module.verify(after)), "verify is not clean after reset"

    slow = {verb: round(s, 1) for verb, s in times.items() if s >= BUDGET_S}
    assert not slow, f"over the {BUDGET_S:.0f} s budget: {slow}"
