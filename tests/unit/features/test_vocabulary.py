"""One world vocabulary and one set of world defaults: the generator, the transform, serving's
schema and the settings cannot disagree about what a region or a category is."""

from __future__ import annotations

import dataclasses

from features import transforms, vocabulary
from foundation.settings import Settings
from pipelines import generate
from serving import schemas


def test_the_generator_and_the_transform_share_one_vocabulary() -> None:
    for name in ("REGIONS", "MERCHANT_CATEGORIES", "CHANNELS"):
        assert getattr(generate, name) is getattr(vocabulary, name)
        assert getattr(transforms, name) is getattr(vocabulary, name)
    # the generator's per-category parameters are laid out in the vocabulary's order
    assert len(generate.CATEGORY_WEIGHTS) == len(vocabulary.MERCHANT_CATEGORIES)
    assert len(generate.REGION_WEIGHTS) == len(vocabulary.REGIONS)


def test_serving_accepts_exactly_the_vocabulary() -> None:
    assert schemas.Region.__args__ == vocabulary.REGIONS
    assert schemas.Channel.__args__ == vocabulary.CHANNELS


def test_world_defaults_live_in_the_settings_only() -> None:
    fields = dataclasses.fields(generate.WorldConfig)
    assert all(f.default is dataclasses.MISSING for f in fields)  # no second set of defaults
    world = generate.WorldConfig.with_defaults()
    for f in fields:
        assert getattr(world, f.name) == Settings.model_fields[f.name].default
    custom = Settings(_env_file=None, n_users=123, history_days=5)
    assert generate.WorldConfig.from_settings(custom).n_users == 123
    assert generate.WorldConfig.from_settings(custom, seed=9).seed == 9
