"""The simulator's progress file, judged without a pid: how the traffic container's healthcheck
and ``fraudlab status`` inside the containerised stack tell a sending simulator from a stopped
one."""

from __future__ import annotations

import pytest

from tests.conftest import small_settings
from traffic import progress

NOW = 1_800_000_000.0
CLOCK = "2025-03-02T10:00:00"


def state(**fields) -> dict:
    """A progress file as the simulator writes it while it sends."""
    return {
        "clock": CLOCK,
        "sent_total": 1200,
        "errors_total": 0,
        "updated_at": NOW - 3,
        "finished": False,
        "last_error": None,
        **fields,
    }


@pytest.mark.parametrize(
    ("written", "clock", "expected", "healthy"),
    [
        (state(), CLOCK, progress.SENDING, True),
        (None, None, progress.NOT_STARTED, False),
        # exited on SIGTERM (`compose stop traffic`): known at once, not 90 s later
        (state(stopped_at=NOW - 1), CLOCK, progress.STOPPED, False),
        # killed, or hung: nothing written for longer than a sending simulator ever waits
        (state(updated_at=NOW - progress.STALE_S - 1), CLOCK, progress.STALLED, False),
        (state(last_error="serving: connection refused"), CLOCK, progress.RETRYING, False),
        (state(finished=True, stopped_at=NOW - 600), CLOCK, progress.FINISHED, True),
        # finished, but the clock moved since (a baseline restored): more to send, no sender
        (
            state(finished=True, stopped_at=NOW - 600),
            "2025-03-01T00:00:00",
            progress.STOPPED,
            False,
        ),
        # without the clock (the healthcheck), the file's word is taken
        (state(finished=True, stopped_at=NOW - 600), None, progress.FINISHED, True),
    ],
)
def test_judge(written, clock, expected, healthy) -> None:
    reading = progress.judge(written, NOW, clock)
    assert (reading.state, reading.healthy) == (expected, healthy), reading


def test_a_stop_mark_lasts_until_the_next_run_writes(tmp_path) -> None:
    settings = small_settings(tmp_path / "home")
    settings.data_dir.mkdir(parents=True)
    progress.mark_stopped(settings)  # nothing written yet: nothing to mark
    assert progress.read_state(settings) is None

    progress.write_state(settings, state())
    progress.mark_stopped(settings, now=NOW)
    marked = progress.read_state(settings)
    assert marked == {**state(), "stopped_at": NOW}  # progress kept as it was
    assert progress.judge(marked, NOW + 5, CLOCK).state == progress.STOPPED

    progress.write_state(settings, state(updated_at=NOW + 10))  # a new run's first write
    assert progress.judge(progress.read_state(settings), NOW + 12, CLOCK).healthy
