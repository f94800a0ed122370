"""A regenerated world gets a feature store built from its own tables, not the old one's."""

from __future__ import annotations

import pytest

from tests.conftest import small_settings

pytestmark = pytest.mark.slow

TINY = {"n_users": 300, "n_merchants": 40, "history_days": 35, "future_days": 2}


def _online_signups(settings, users: list[int]) -> list[float | None]:
    from features.store import open_store

    store = open_store(settings)
    rows = store.get_online_features(
        features=["user_profile:signup_ts"], entity_rows=[{"user_id": u} for u in users]
    ).to_dict()
    return rows["signup_ts"]


def test_regenerating_the_world_rebuilds_the_online_store(tmp_path) -> None:
    from pipelines import tasks
    from pipelines.data import epoch_seconds, read_raw

    users = [1, 2, 3]
    first = small_settings(tmp_path, seed=1, **TINY)
    tasks.prepare_data(first)
    tasks.prepare_features(first)
    before = _online_signups(first, users)

    second = small_settings(tmp_path, seed=2, **TINY)  # same home, another world
    assert tasks.prepare_data(second)
    tasks.prepare_features(second)
    after = _online_signups(second, users)

    profiles = read_raw(second, "users").set_index("user_id").loc[users]
    expected = list(epoch_seconds(profiles["signup_timestamp"]))
    assert after == pytest.approx(expected)
    assert after != pytest.approx(before)  # the old world's values are gone
