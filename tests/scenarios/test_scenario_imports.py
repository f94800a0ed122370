"""Scenarios reach the stack through ``ScenarioContext`` and a short list of public contracts.

Every ``.py`` file of every scenario folder (the template included) is parsed, and any import
of a project package outside ``ALLOWED`` fails, naming file, line and module: a scenario that
imports ``control.stack`` or ``pipelines.training`` breaks silently the day those modules are
refactored, where a seam of ``lab/context.py`` would have been changed with them. Standard
library and third-party imports are free; what counts as the project is import-linter's list
of root packages in ``pyproject.toml``. ``broken_scenarios/AUTHORING.md`` documents the list.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

from foundation.settings import REPO_ROOT
from lab.catalogue import catalogue_root

ROOT = catalogue_root(REPO_ROOT)
PROJECT_PACKAGES = frozenset(
    tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
        "root_packages"
    ]
)

# Module → the names a scenario may import from it (None: any).
ALLOWED: dict[str, frozenset[str] | None] = {
    "lab": None,  # Check, Level, ScenarioContext, CommandFailed
    "lab.context": None,  # edit_once: a serving release edit
    "lab.git": None,  # code-review branches, built with plumbing
    "foundation.settings": frozenset({"Settings"}),  # the type of ctx.settings, its defaults
    "features.transforms": None,  # the shared transform both sides run
    "features.vocabulary": None,  # the world's regions, categories, channels
    "model.decision": None,  # the decision rule and cost model
    "model.evaluation": None,  # metrics for a rare-event problem
    "model.slices": None,  # the slices a model is judged on
    "model.export": None,  # the ONNX session: scoring a bundle offline
    "model.record": None,  # the prediction record ctx.prediction_log yields
}

# Files of a scenario folder that are not scenario code: run by the scenario as a script
# inside a checkout of the code under review, they import that code on purpose. Listed by name,
# each with the reason; anything else in a scenario folder is held to ALLOWED.
RESOURCE_SCRIPTS: dict[str, str] = {
    "08-training-change-awaits-review/review_checks.py": (
        "fed to `python -` with a detached checkout of the review branch as its working"
        " directory: it runs the branch's own pipelines.training"
    ),
}


def _allowed(module: str, name: str | None) -> bool:
    """``from module import name`` (``name`` None: ``import module``) is allowed."""
    if name is None:
        return module in ALLOWED and ALLOWED[module] is None
    names = ALLOWED.get(module, frozenset())
    if names is None or name in names:
        return True
    return ALLOWED.get(f"{module}.{name}", frozenset()) is None  # from model import export


def _dynamic_import(node: ast.Call) -> str | None:
    """The module named by ``importlib.import_module("x")`` or ``__import__("x")``."""
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if called not in ("import_module", "__import__") or not node.args:
        return None
    first = node.args[0]
    return (
        first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None
    )


def disallowed_imports(source: str, filename: str) -> list[str]:
    """``file:line: module`` for every import of a project package outside ``ALLOWED``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.partition(".")[0]
                if top in PROJECT_PACKAGES and not _allowed(alias.name, None):
                    found.append(f"{filename}:{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                found.append(
                    f"{filename}:{node.lineno}: relative import {'.' * node.level}{module}"
                )
                continue
            if module.partition(".")[0] not in PROJECT_PACKAGES:
                continue
            for alias in node.names:
                if not _allowed(module, alias.name):
                    found.append(f"{filename}:{node.lineno}: from {module} import {alias.name}")
        elif isinstance(node, ast.Call):
            module = _dynamic_import(node) or ""
            if module.partition(".")[0] in PROJECT_PACKAGES and not _allowed(module, None):
                found.append(f"{filename}:{node.lineno}: dynamic import {module}")
    return found


def scenario_sources() -> list[Path]:
    return sorted(p for p in ROOT.glob("*/**/*.py") if "__pycache__" not in p.parts)


def test_scenario_folders_import_only_lab_and_the_public_contracts() -> None:
    checked, problems = [], []
    for path in scenario_sources():
        relative = path.relative_to(ROOT).as_posix()
        if relative in RESOURCE_SCRIPTS:
            continue
        checked.append(relative)
        problems += disallowed_imports(path.read_text(), f"{ROOT.name}/{relative}")
    assert "_template/scenario.py" in checked
    assert len([c for c in checked if c.endswith("/scenario.py")]) >= 9  # 8 scenarios + template
    assert not problems, (
        "scenario code imports past ScenarioContext; add a seam to lab/context.py (or, for a"
        " public contract, to ALLOWED and AUTHORING.md):\n" + "\n".join(problems)
    )


@pytest.mark.parametrize("relative", sorted(RESOURCE_SCRIPTS))
def test_every_listed_resource_script_exists_and_is_run_by_its_scenario(relative: str) -> None:
    path = ROOT / relative
    assert path.is_file(), f"{relative} is listed as a resource script but does not exist"
    scenario = (path.parent / "scenario.py").read_text()
    assert f'"{path.name}"' in scenario, f"{path.parent.name}/scenario.py never names {path.name}"
    assert disallowed_imports(path.read_text(), relative), (
        f"{relative} imports no project code: hold it to ALLOWED instead of listing it"
    )


def test_the_project_packages_come_from_the_layer_contract() -> None:
    assert {"foundation", "model", "pipelines", "control", "lab", "fraudlab"} <= PROJECT_PACKAGES
    for module in ALLOWED:
        assert module.partition(".")[0] in PROJECT_PACKAGES, module
        assert (REPO_ROOT / Path(*module.split("."))).with_suffix(".py").exists() or (
            REPO_ROOT / module.replace(".", "/") / "__init__.py"
        ).exists(), f"{module} is allowed but does not exist"


def test_authoring_md_lists_every_allowed_module() -> None:
    text = (ROOT / "AUTHORING.md").read_text()
    missing = [module for module in ALLOWED if f"`{module}" not in text]
    assert not missing, f"AUTHORING.md does not document {missing}"


@pytest.mark.parametrize(
    ("source", "reported"),
    [
        ("from control import stack\n", "x.py:1: from control import stack"),
        ("import json\nimport pipelines.data\n", "x.py:2: import pipelines.data"),
        ("from model.registry import CHAMPION\n", "x.py:1: from model.registry import CHAMPION"),
        ("from model import registry\n", "x.py:1: from model import registry"),
        ("from foundation.settings import REPO_ROOT\n", "x.py:1: from foundation.settings"),
        ("import foundation.settings\n", "x.py:1: import foundation.settings"),
        ("def f():\n    from monitoring import sources\n", "x.py:2: from monitoring import"),
        ("import importlib\nimportlib.import_module('traffic.loadtest')\n", "x.py:2: dynamic"),
        ("from . import helpers\n", "x.py:1: relative import ."),
    ],
)
def test_the_check_reports_an_import_past_the_context(source: str, reported: str) -> None:
    found = disallowed_imports(source, "x.py")
    assert len(found) == 1 and found[0].startswith(reported), found


def test_the_check_lets_the_public_surface_and_other_libraries_through() -> None:
    source = """
import json
import numpy as np
import pandas as pd
from lab import Check, ScenarioContext
from lab import git as lab_git
from lab.context import edit_once
from foundation.settings import Settings
from features.transforms import TRANSFORM_VERSION, build_model_inputs
from features.vocabulary import MERCHANT_CATEGORIES
from model import export
from model.export import onnx_session
from model.record import PredictionRecord
import model.decision
"""
    assert disallowed_imports(source, "x.py") == []
