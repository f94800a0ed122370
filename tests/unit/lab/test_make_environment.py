"""`make break S=03 SEED=1` must not leave the scenario or seed in any process's environment:
the verbs restart long-running processes (serving, the traffic simulator), and a candidate can
read /proc/<pid>/environ of every process on the machine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from foundation.settings import REPO_ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def environment_of_a_verb(tmp_path, *make_args: str) -> tuple[dict[str, str], list[str]]:
    """Run a scenario verb with a stand-in for uv that records its environment and arguments."""
    out = tmp_path / "seen.json"
    fake = tmp_path / "uv"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"json.dump({{'env': dict(os.environ), 'argv': sys.argv[1:]}}, open({str(out)!r}, 'w'))\n"
    )
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    done = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO_ROOT), *make_args, f"UV={fake}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    seen = json.loads(out.read_text())
    return seen["env"], seen["argv"]


def test_break_hands_the_scenario_to_the_engine_and_to_no_environment(tmp_path) -> None:
    env, argv = environment_of_a_verb(tmp_path, "break", "S=03", "SEED=1")
    assert argv[-4:] == ["break", "03", "--seed", "1"]  # the interviewer's own command
    leaked = {
        k: v for k, v in env.items() if k in ("S", "SEED") or k.startswith(("MAKE", "MFLAGS"))
    }
    assert not leaked, leaked
    assert not any("03" in v and "S=" in v for v in env.values())
