"""The layer order is a contract: import-linter keeps it (``make lint``), and it has teeth.

foundation → features | model → pipelines, serving, monitoring → traffic, bench, dags →
control → lab → fraudlab (the command). See README "Architecture" and pyproject.toml.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from control import releases
from foundation.settings import REPO_ROOT

PACKAGES = (
    "foundation", "features", "model", "pipelines", "serving", "monitoring",
    "traffic", "bench", "dags", "control", "lab", "fraudlab",
)  # fmt: skip
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def copy_code(target: Path) -> Path:
    """The project's Python packages and pyproject.toml, nothing else (a few hundred KB)."""
    for package in PACKAGES:
        shutil.copytree(
            REPO_ROOT / package, target / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(REPO_ROOT / "pyproject.toml", target / "pyproject.toml")
    return target


def test_the_layer_contract_holds() -> None:
    done = lint_imports(REPO_ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "statement", "expected"),
    [
        # the ground floor reaching up into the scenario lab
        (
            "foundation/timeutil.py",
            "from lab import engine",
            "foundation is not allowed to import",
        ),
        # serving reaching into the training package
        ("serving/scorer.py", "from pipelines import training", "serving.scorer -> pipelines"),
        # a circle inside the control plane
        ("control/launch.py", "from control import stack", "No cycles are allowed in control"),
    ],
)
def test_a_deliberate_violation_fails_the_contract(
    tmp_path, module: str, statement: str, expected: str
) -> None:
    root = copy_code(tmp_path)
    path = root / module
    path.write_text(path.read_text() + f"\n{statement}  # noqa\n")
    done = lint_imports(root)
    assert done.returncode != 0, done.stdout
    assert expected in done.stdout, done.stdout


def test_a_serving_release_ships_every_package_serving_imports() -> None:
    """A release holds ``releases.PACKAGES`` only: anything else serving imports would be
    missing (or silently taken from the checkout) in the deployed process."""
    import grimp

    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    reached = graph.find_upstream_modules("serving.service") | {"serving.service"}
    outside = sorted(m for m in reached if m.split(".")[0] not in releases.PACKAGES)
    assert not outside, f"serving imports {outside}, which a release does not ship"
