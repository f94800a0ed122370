"""Manifest validation, seeded variants and templates."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from lab.manifest import Manifest, render
from tests.unit.lab.conftest import MANIFEST


def manifest(**changes) -> Manifest:
    data = yaml.safe_load(MANIFEST)
    data.update(changes)
    return Manifest.model_validate(data)


def test_the_toy_manifest_is_valid_and_scalars_become_choices() -> None:
    m = manifest(variants={"colour": ["crimson", "navy"], "size": [1, 2, 3]})
    assert m.variant_count() == 6
    assert m.variants["size"][2].value == 3
    assert m.variants["size"][2].note == ""


@pytest.mark.parametrize(
    "changes, complaint",
    [
        ({"id": "1"}, "id"),
        ({"id": "01-toy"}, "id"),
        ({"title": "short"}, "title"),
        ({"kind": "quiz"}, "kind"),
        ({"seniority": []}, "seniority"),
        ({"seniority": ["junior", "junior"]}, "twice"),
        ({"time_box_minutes": 1}, "time_box"),
        ({"variants": {"colour": ["red"]}}, "at least two variants"),
        ({"variants": {"colour": ["red", "red"]}}, "repeats"),
        ({"variants": {"Colour": ["red", "blue"]}}, "lower_snake_case"),
        ({"steady_state": ["not a name"]}, "function name"),
        ({"cause": "spoiler"}, "cause"),  # unknown keys are refused, not ignored
        ({"family": "skew"}, "family"),  # lab mode's families are a fixed, neutral list
    ],
)
def test_invalid_manifests_are_refused_with_the_reason(changes, complaint) -> None:
    with pytest.raises(ValidationError) as error:
        manifest(**changes)
    assert complaint in str(error.value)


def test_family_is_optional_and_one_of_the_curriculum_families() -> None:
    assert manifest().family is None
    assert manifest(family="monitoring").family == "monitoring"


def test_seeds_that_differ_pick_different_variants_and_the_same_seed_the_same() -> None:
    m = manifest(variants={"colour": ["a", "b", "c"], "size": [1, 2], "unit": ["s", "ms"]})
    n = m.variant_count()
    picked = [tuple(m.pick_variant(seed).values().items()) for seed in range(n)]
    assert len(set(picked)) == n  # every variant, each once
    assert m.pick_variant(5).values() == m.pick_variant(5).values()
    assert m.pick_variant(5).values() == m.pick_variant(5 + n).values()
    # consecutive seeds are scrambled, not an odometer on the first dimension
    assert [p[0] for p in picked[:3]] != [("colour", "a"), ("colour", "b"), ("colour", "c")]


def test_a_stored_variant_is_rebuilt_with_its_notes_and_a_stale_one_refused() -> None:
    m = manifest()
    variant = m.variant_from_values({"colour": "navy"})
    assert variant.note("colour") == "the config says navy instead of green"
    with pytest.raises(ValueError, match="does not fit"):
        m.variant_from_values({"colour": "purple"})


def test_templates_fill_values_notes_seed_and_private_data_and_refuse_unknown_fields() -> None:
    variant = manifest().variant_from_values({"colour": "amber"})
    text = "{{ colour }} / {{colour.note}} / {{ seed }} / {{ private.branch }}"
    assert render(text, variant, 42, {"branch": "b"}) == (
        "amber / the config says amber instead of green / 42 / b"
    )
    with pytest.raises(KeyError, match="unknown template field"):
        render("{{ flavour }}", variant, 1, {})
    with pytest.raises(KeyError, match="private.branch"):
        render("{{ private.branch }}", variant, 1, {})
