"""The schedule registry: a paused job stays paused for every process of the stack until it is
resumed, and the simulator's nightly materialisation skips its run while it is paused."""

from __future__ import annotations

import logging
import threading

import pandas as pd
import pytest

from foundation.settings import Settings
from pipelines import schedules
from traffic.simulator import Materializer

MIDNIGHT = pd.Timestamp("2026-03-18", tz="UTC")


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(_env_file=None, home=tmp_path)


def test_a_pause_holds_for_every_reader_until_resumed(settings, tmp_path) -> None:
    name = schedules.MATERIALIZE
    assert schedules.active(settings, name)
    assert schedules.pause(settings, name) is True
    assert schedules.pause(settings, name) is False  # already paused: nothing changes
    another_process = Settings(_env_file=None, home=tmp_path)
    assert not schedules.active(another_process, name)
    [line] = schedules.describe(another_process)
    assert line.startswith(f"{name}: PAUSED since ")
    assert schedules.resume(another_process, name) is True
    assert schedules.resume(settings, name) is False
    assert schedules.active(settings, name)
    assert schedules.describe(settings)[0].startswith(f"{name}: active")


def test_unknown_names_are_refused_and_a_damaged_file_pauses_nothing(settings) -> None:
    with pytest.raises(schedules.ScheduleError, match=schedules.MATERIALIZE):
        schedules.pause(settings, "fraudlab_materialise")
    schedules.state_path(settings).write_text("{not json")
    assert schedules.active(settings, schedules.MATERIALIZE)


def materialize_at_midnight(settings: Settings) -> Materializer:
    materializer = Materializer(settings)
    try:
        materializer.request(MIDNIGHT)
        assert materializer.wait(MIDNIGHT, timeout_s=60, stop=threading.Event())
    finally:
        materializer.close()
    return materializer


def test_the_nightly_materialisation_is_skipped_while_paused(settings, caplog) -> None:
    schedules.pause(settings, schedules.MATERIALIZE)
    with caplog.at_level(logging.INFO, logger="fraudlab.traffic"):
        materializer = materialize_at_midnight(settings)
    assert materializer.store is None  # the feature store was never opened
    assert "skipped: schedule fraudlab_materialize is paused" in caplog.text


@pytest.mark.slow
def test_a_resumed_schedule_materialises_again(settings) -> None:
    schedules.pause(settings, schedules.MATERIALIZE)
    schedules.resume(settings, schedules.MATERIALIZE)
    assert materialize_at_midnight(settings).store is not None  # Feast opened to materialise
