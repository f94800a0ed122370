"""The traffic simulator's progress file: where it is, what it holds, what it says.

Owns: ``<data_dir>/traffic_state.json`` — written by the simulator (``traffic.simulator``) every
few seconds while it sends and once more when it exits (``stopped_at``), read back to resume —
and the one judgement of it that every reader shares: the embedded ``fraudlab status`` (next to
the process it started), the traffic container's healthcheck, and ``fraudlab status`` inside the
containerised stack, which has no process or container to look at, only this file in the shared
home volume.

Must not: import anything heavy (the container healthcheck imports it every 30 s), or judge a
process: a pid is the embedded stack's business, a container's state the host's.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from foundation.settings import Settings

STATE_FILE = "traffic_state.json"
# A simulator persists at least every few seconds while it sends, and every back-off (≤ 10 s)
# while it retries: a file older than this belongs to a simulator that is gone or stuck.
STALE_S = 90.0

SENDING = "sending"
FINISHED = "finished"
RETRYING = "retrying"
STALLED = "stalled"
STOPPED = "stopped"
NOT_STARTED = "not started"


@dataclass(frozen=True)
class Reading:
    """What the progress file says about the simulator: one of the states above, and why."""

    state: str
    detail: str

    @property
    def healthy(self) -> bool:
        return self.state in (SENDING, FINISHED)


def state_path(settings: Settings) -> Path:
    return settings.data_dir / STATE_FILE


def read_state(settings: Settings) -> dict | None:
    """The persisted progress (requests sent, errors, clock, …), or None before the first."""
    try:
        return json.loads(state_path(settings).read_text())
    except (FileNotFoundError, ValueError):
        return None


def write_state(settings: Settings, state: dict) -> None:
    """Replace the file atomically: a reader never sees half of it."""
    path = state_path(settings)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state))
    tmp.replace(path)


def mark_stopped(settings: Settings, now: float | None = None) -> None:
    """Record that the simulator writing this file has exited (progress left as it was). Its
    next start clears the mark with its first write."""
    state = read_state(settings)
    if state is not None:
        write_state(settings, {**state, "stopped_at": time.time() if now is None else now})


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago"


def judge(state: dict | None, now: float, clock: str | None = None) -> Reading:
    """The simulator as its progress file describes it at ``now`` (epoch seconds).

    ``clock``: the stack's simulated clock (ISO), when the caller read it. A finished replay
    counts only while the clock is still where the replay ended; once it moved (data
    regenerated, a baseline restored) there is more to send and nothing sending it. None: the
    file's own word is taken.
    """
    if state is None:
        return Reading(NOT_STARTED, "no progress recorded yet")
    if state.get("finished") and (clock is None or clock == state.get("clock")):
        return Reading(FINISHED, "replay finished")
    updated = float(state.get("updated_at", 0))
    if state.get("stopped_at") is not None:
        return Reading(STOPPED, f"stopped {_ago(now - float(state['stopped_at']))}")
    if now - updated >= STALE_S:
        return Reading(STALLED, f"last progress {_ago(now - updated)}")
    if state.get("last_error"):
        return Reading(RETRYING, f"retrying: {str(state['last_error'])[:60]}")
    return Reading(SENDING, f"last progress {_ago(now - updated)}")
