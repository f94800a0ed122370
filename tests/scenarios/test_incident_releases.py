"""Incidents that deploy a changed serving release (01, 04) beyond the one seed the contract test
drives: every variant's change still applies to today's serving code, compiles, and changes
what it claims to change — so an edit to serving breaks this test, not a break in an interview."""

from __future__ import annotations

import ast

import pytest

from foundation.settings import REPO_ROOT
from lab.catalogue import Catalogue, catalogue_root

CATALOGUE = Catalogue(catalogue_root(REPO_ROOT))
SKEW = CATALOGUE.get("01")
LATENCY = CATALOGUE.get("04")


def read(path: str) -> str:
    return (REPO_ROOT / path).read_text()


def names_assigned(source: str) -> set[str]:
    tree = ast.parse(source)
    return {
        node.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)
    } | {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


@pytest.mark.parametrize("change", [c.value for c in SKEW.manifest.variants["change"]])
def test_every_skew_release_applies_to_todays_scorer(change: str) -> None:
    module = SKEW.module()
    source = read(module.SCORER)
    patched = module.patched_scorer(change, source)
    compile(patched, module.SCORER, "exec")
    assert patched != source
    # the release computes inputs itself somewhere the shared transform does not
    added = names_assigned(patched) - names_assigned(source)
    assert added, f"{change}: the release adds no code of its own"


def test_the_column_order_release_reads_every_input_in_another_order() -> None:
    from features.transforms import MODEL_FEATURES

    module = SKEW.module()
    namespace: dict = {}
    exec(f"INPUT_ROW = (\n{module.ROW_ORDER})", namespace)  # noqa: S102 - our own literal
    row = namespace["INPUT_ROW"]
    assert sorted(row) == sorted(MODEL_FEATURES), "the row must still hold every model input"
    assert list(row) != list(MODEL_FEATURES)


@pytest.mark.parametrize("cause", [c.value for c in LATENCY.manifest.variants["cause"]])
def test_every_latency_variant_applies_to_todays_serving(cause: str) -> None:
    module = LATENCY.module()
    changes = module.release_changes(cause, read)
    if cause == "threads":
        assert changes == {}  # a configuration change, no release
        return
    assert len(changes) == 1
    for path, text in changes.items():
        compile(text, path, "exec")
        assert text != read(path)
