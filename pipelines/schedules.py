"""The schedule registry: the stack's recurring jobs, and whether each is paused.

Owns: which jobs the stack runs by itself on a schedule (``SCHEDULES``: the DAG a job stands
for, when it runs, who runs it) and their pause state in ``<home>/schedules.json``, changed with
``fraudlab schedule pause|resume <name>`` and shown by ``fraudlab schedule`` and
``fraudlab status``. A runner asks ``active`` before each run and skips it while paused — the
way a scheduler skips a paused DAG — so pausing is how an operator holds a job during
maintenance, and resuming lets the next run happen on schedule (a run by hand, e.g.
``make materialize``, is not affected by the pause and does not lift it).

In the embedded stack the traffic simulator is the scheduler of the nightly materialisation: it
stands in for Airflow running ``fraudlab_materialize`` and materialises the online store at each
simulated midnight (``traffic.simulator.Materializer``).

Must not: run a job itself, import anything heavy (the simulator reads the state once a
simulated day, ``fraudlab status`` on every call), or touch Airflow's own pause flags: the DAGs
of ``dags/`` start paused in an Airflow home, which says nothing about what this stack runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from foundation.settings import Settings

STATE_FILE = "schedules.json"
MATERIALIZE = "fraudlab_materialize"


@dataclass(frozen=True)
class Schedule:
    name: str  # the DAG the job stands for
    when: str
    runner: str  # who runs it in the embedded stack
    does: str


SCHEDULES: dict[str, Schedule] = {
    MATERIALIZE: Schedule(
        name=MATERIALIZE,
        when="every simulated midnight",
        runner="the traffic simulator (paced and fast-forward)",
        does="materialise the online store up to the new day",
    ),
}


class ScheduleError(ValueError):
    """An unknown schedule name; the message lists the known ones."""


def state_path(settings: Settings) -> Path:
    return settings.home.resolve() / STATE_FILE


def _known(name: str) -> Schedule:
    try:
        return SCHEDULES[name]
    except KeyError:
        raise ScheduleError(
            f"no schedule named '{name}': choose one of {', '.join(SCHEDULES)}"
        ) from None


def paused(settings: Settings) -> dict[str, dict[str, Any]]:
    """Paused schedules: name → when it was paused (``since``, wall clock) and the stack's
    simulated clock then (``clock``). A missing or unreadable file pauses nothing."""
    try:
        state = json.loads(state_path(settings).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    found = state.get("paused", {}) if isinstance(state, dict) else {}
    return {name: info for name, info in found.items() if name in SCHEDULES}


def active(settings: Settings, name: str) -> bool:
    """Whether the job ``name`` runs at its next scheduled time."""
    _known(name)
    return name not in paused(settings)


def _write(settings: Settings, state: dict[str, dict[str, Any]]) -> None:
    path = state_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")  # a reader never sees half a file
    tmp.write_text(json.dumps({"paused": state}, indent=2) + "\n")
    tmp.replace(path)


def _clock(settings: Settings) -> str | None:
    from pipelines.data import read_clock

    try:
        return read_clock(settings).isoformat()
    except FileNotFoundError:
        return None


def pause(settings: Settings, name: str) -> bool:
    """Pause ``name`` (its runner skips it until ``resume``); False if it already was."""
    _known(name)
    state = paused(settings)
    if name in state:
        return False
    state[name] = {
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
        "clock": _clock(settings),
    }
    _write(settings, state)
    return True


def resume(settings: Settings, name: str) -> bool:
    """Let ``name`` run again at its next scheduled time; False if it was not paused."""
    _known(name)
    state = paused(settings)
    if state.pop(name, None) is None:
        return False
    _write(settings, state)
    return True


def describe(settings: Settings) -> list[str]:
    """One line per schedule: name, active or paused (since when), when it runs, by whom."""
    state = paused(settings)
    lines = []
    for schedule in SCHEDULES.values():
        info = state.get(schedule.name)
        if info is None:
            status = "active"
        else:
            since = str(info.get("since", "?"))[:16].replace("T", " ")
            clock = str(info.get("clock") or "")[:16].replace("T", " ")
            status = f"PAUSED since {since} UTC" + (f" (simulated clock {clock})" if clock else "")
        lines.append(
            f"{schedule.name}: {status} — {schedule.does}, {schedule.when}, run by "
            f"{schedule.runner}"
        )
    return lines
