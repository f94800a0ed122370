"""The scenario lab on the containerised stack: the same verbs, the same contract.

On the session's stack (``conftest.py``), through the host CLI exactly as `make … STACK=compose`
runs it (each verb in a one-off lab runner container): the code-review scenario (08) and one
incident (07: live overrides of the drift monitor, then fast-forwarded traffic) go through the
contract of ``tests/scenarios/test_contract.py`` — healthy → reset without break is harmless →
break (ticket only, nothing in the lab directory or `make status` names it) → the symptom shows
with the stack's own tools → verify fails, neutrally → break again is harmless → a wrong fix
fails → the reference fix passes → reset → healthy again (08: the candidate's repository
exactly as before; 07: verify passes on the restored stack). Fixes and symptoms are the
scenario's own functions, run in a lab runner without the Docker socket — as far from the
stack's internals as the candidate's workstation.

And what the candidate has: a git checkout in the workstation where the review branch appears,
no catalogue, no lab state, no lab verbs; `fraudlab deploy` and `fraudlab restart serving`
work from there without Docker.

Break, verify and reset times are printed at the end of the session.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from control import compose
from foundation.settings import REPO_ROOT
from lab.catalogue import Catalogue, catalogue_root
from tests.compose.conftest import TIMINGS, Stack
from tests.scenarios.test_contract import SEED, assert_hidden, tells_of

pytestmark = [pytest.mark.compose, pytest.mark.slow]

CHECKOUT = "/home/fraudlab/fraudlab"

# In a lab runner: one step of the drill on the active scenario, its result as the last line.
DRILL = """
import json, sys
from foundation.settings import get_settings
from lab.engine import Lab

step, args = sys.argv[1], sys.argv[2:]
lab = Lab(get_settings())
if step == "verify_fresh":  # the scenario's verify on the restored stack, with inject's data
    _, module, ctx = lab.fresh_context(args[0], int(args[1]))
    ctx.private.update(json.loads(args[2]))
    result = [[c.description, c.ok, c.detail[-1500:]] for c in module.verify(ctx)]
elif step == "lab_files":  # everything readable in the lab directory (scratch excepted)
    root = lab.store.root
    parts = []
    for path in root.rglob("*"):
        if "work" not in path.relative_to(root).parts:
            parts.append(path.name)
            if path.is_file():
                parts.append(path.read_bytes().decode(errors="replace"))
    result = "\\n".join(parts)
else:
    _, module, ctx = lab.active_context()
    if step == "symptom":
        result = [[c.description, c.ok, c.detail[-1500:]] for c in module.symptom(ctx)]
    elif step == "private":
        result = ctx.private
    else:  # wrong_fix, reference_fix
        getattr(module, step)(ctx)
        result = "done"
print(json.dumps(result))
"""


@pytest.fixture(scope="module", autouse=True)
def _leaves_the_stack_healthy(stack: Stack):
    """The other compose tests share this stack: leave it with every service healthy (a
    restarted container reports "starting" until its healthcheck has passed again)."""
    yield
    services = stack.compose.long_running()
    assert compose.wait_healthy(stack.compose, services, timeout_s=240), "not healthy again"


# The image is shared with the lab runner, so the lab's mount points exist in the workstation
# too, as empty directories: what must hold is that no lab volume or catalogue is mounted there
# and nothing is in them (checked while a scenario is active, too). Prints nothing when so.
LAB_FROM_WORKSTATION = (
    "grep -E ' /var/lib/fraudlab/(lab|catalogue)' /proc/mounts; "
    "find /var/lib/fraudlab/lab /var/lib/fraudlab/catalogue -mindepth 1 2>/dev/null; true"
)


def scenario(ref: str):
    return Catalogue(catalogue_root(REPO_ROOT)).get(ref)


def workstation(stack: Stack, command: str) -> str:
    done = stack.compose.exec("workstation", ["sh", "-c", command], capture=True)
    assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
    return done.stdout


def repo_snapshot(stack: Stack) -> str:
    """What a candidate would notice in their checkout: refs, HEAD, status, worktrees."""
    return workstation(
        stack,
        f"cd {CHECKOUT} && git for-each-ref --format='%(refname) %(objectname)' && "
        "git rev-parse --symbolic-full-name HEAD HEAD && "
        "git status --porcelain --untracked-files=all && git worktree list --porcelain",
    )


def timed(times: dict[str, float], verb: str, action):
    started = time.monotonic()
    result = action()
    times[verb] = max(times.get(verb, 0.0), time.monotonic() - started)
    return result


def drill(stack: Stack, step: str, *args: str):
    return json.loads(stack.in_lab_runner(DRILL, step, *args))


def run_contract(stack: Stack, ref: str, repo_unchanged: bool) -> None:
    found = scenario(ref)
    variant = found.manifest.pick_variant(SEED)
    tells = tells_of(found, variant)
    times: dict[str, float] = {}
    TIMINGS[found.folder.name] = times

    # healthy, nothing active; reset without break is harmless
    assert stack.cli("lab", "verify").returncode == 2
    reset = stack.cli("lab", "reset")
    assert reset.returncode == 0 and "nothing to reset" in reset.stdout, reset.stderr
    before = repo_snapshot(stack)

    # break: the ticket and nothing else; nothing the candidate can read names the scenario
    broke = timed(times, "break", lambda: stack.cli("lab", "break", ref, "--seed", str(SEED)))
    assert broke.returncode == 0, broke.stdout + broke.stderr
    ticket = broke.stdout
    assert ticket.strip()
    assert_hidden(ticket, tells, found.id)
    clean = f"cd {CHECKOUT} && git status --porcelain --untracked-files=all"
    assert workstation(stack, clean) == "", "break left the candidate's checkout dirty"
    assert_hidden(drill(stack, "lab_files"), tells, found.id)
    assert workstation(stack, LAB_FROM_WORKSTATION) == "", "the workstation reaches the lab"
    status = stack.cli("status")
    assert "scenario lab: a scenario is active" in status.stdout, status.stdout + status.stderr
    assert_hidden(status.stdout, tells, found.id)

    # the symptom, with the stack's own tools
    for description, ok, detail in drill(stack, "symptom"):
        assert ok, f"symptom not visible: {description}: {detail}"

    # verify fails, neutrally
    verify = timed(times, "verify", lambda: stack.cli("lab", "verify"))
    assert verify.returncode == 1, verify.stdout + verify.stderr
    assert_hidden(verify.stdout, tells, found.id)

    # break twice is harmless
    again = timed(times, "break", lambda: stack.cli("lab", "break", ref, "--seed", str(SEED)))
    assert again.returncode == 0 and again.stdout == ticket
    assert stack.cli("lab", "verify").returncode == 1

    # a wrong fix does not pass; the reference fix does
    drill(stack, "wrong_fix")
    verify = timed(times, "verify", lambda: stack.cli("lab", "verify"))
    assert verify.returncode == 1, f"a wrong fix passes verify:\n{verify.stdout}"
    drill(stack, "reference_fix")
    verify = timed(times, "verify", lambda: stack.cli("lab", "verify", "--explain"))
    assert verify.returncode == 0, f"the reference fix does not pass:\n{verify.stdout}"
    private = json.dumps(drill(stack, "private"))

    # reset: back to the healthy baseline
    reset = timed(times, "reset", lambda: stack.cli("lab", "reset"))
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert reset.stdout.startswith("reset: healthy baseline verified"), reset.stdout
    assert stack.cli("lab", "verify").returncode == 2  # nothing active any more
    if repo_unchanged:
        assert repo_snapshot(stack) == before, "reset did not restore the repository"
    else:
        checks = drill(stack, "verify_fresh", ref, str(SEED), private)
        failing = [f"{d}: {detail}" for d, ok, detail in checks if not ok]
        assert not failing, f"verify is not clean after reset: {failing}"


def test_the_workstation_has_a_checkout_but_no_lab(stack: Stack) -> None:
    log = workstation(stack, f"cd {CHECKOUT} && git log --format=%s && git status --porcelain")
    assert log.startswith("fraudlab at "), log
    listing = workstation(stack, f"ls -a {CHECKOUT}")
    assert "pipelines" in listing and "broken_scenarios" not in listing
    assert workstation(stack, LAB_FROM_WORKSTATION) == ""
    refused = stack.compose.exec("workstation", ["fraudlab", "lab", "verify"], capture=True)
    assert refused.returncode == 2 and "interviewer" in refused.stderr


def test_code_review_scenario_keeps_the_contract_in_compose(stack: Stack) -> None:
    run_contract(stack, "08", repo_unchanged=True)


def test_incident_scenario_keeps_the_contract_in_compose(stack: Stack) -> None:
    run_contract(stack, "07", repo_unchanged=False)


def test_deploy_and_restart_from_the_workstation_reach_serving(stack: Stack) -> None:
    """No Docker in the workstation: serving's supervisor follows the release pointer."""
    deployed = stack.compose.exec("workstation", ["fraudlab", "deploy"], capture=True)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    status = json.loads(workstation(stack, "cat /var/lib/fraudlab/home/run/serving.json"))
    current = json.loads(workstation(stack, "cat /var/lib/fraudlab/home/releases/current.json"))
    assert status["release"] == current["id"]
    since = status["started_at"]
    body = stack.payloads(1, "deployed")[0]
    assert httpx.post(f"{stack.url}/score", json=body, timeout=10).status_code == 200
    diff = stack.compose.exec("workstation", ["fraudlab", "deploy", "--diff"], capture=True)
    assert "the working tree has the same code" in diff.stdout, diff.stdout
    assert diff.stdout.startswith("serving runs r"), diff.stdout  # the release and its commit

    restarted = stack.compose.exec("workstation", ["fraudlab", "restart", "serving"], capture=True)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    status = json.loads(workstation(stack, "cat /var/lib/fraudlab/home/run/serving.json"))
    assert status["started_at"] > since and status["release"] == current["id"]
    body = stack.payloads(1, "restarted")[0]
    assert httpx.post(f"{stack.url}/score", json=body, timeout=10).status_code == 200
