"""Lab mode: the catalogue as a self-serve curriculum, and each learner's progress through it.

Owns: the curriculum (scenarios ordered by family, then difficulty, then id), the learner's
verbs (start the next or a chosen scenario, hint, check, give up, reset) on top of the engine's,
the progress file of each learner (``<lab dir>/progress/<learner>.json``: state, time spent,
hints, checks per scenario; plain JSON that survives ``make down``/``up``) and the report a
manager reads (``<lab dir>/reports/<learner>.md`` and ``.html``).

Must not: run a scenario's functions itself (the engine's verbs do), print, or work on a sealed
lab: a sealed machine is handed over for an interview, and lab mode gives hints and answers
without a passphrase.

The learner chose the scenario, so lab mode may name it (its title, and on give-up its notes);
the progress file holds ids and numbers only, and the report names the concepts of a scenario
only once it is solved or given up.
"""

from __future__ import annotations

import getpass
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from lab import crypto
from lab.catalogue import CatalogueError
from lab.context import Check
from lab.document import Document
from lab.engine import Hint, Lab, LabError
from lab.manifest import Difficulty, Family, Kind, Manifest
from lab.state import ActiveScenario, Mode

LEARNER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
FAMILY_ORDER = list(Family)
DIFFICULTY_ORDER = list(Difficulty)
SEALED = (
    "this machine is sealed for an interview: lab mode is off (no hints or answers without the "
    "passphrase). The interviewer runs `make unseal` to hand it back for learning"
)


class Status(StrEnum):
    NOT_STARTED = "not started"
    IN_PROGRESS = "in progress"
    SOLVED = "solved"
    GAVE_UP = "gave up"


def _now() -> datetime:
    return datetime.now(UTC)


class ScenarioProgress(BaseModel):
    """One learner's work on one scenario, over every attempt (start → reset)."""

    model_config = ConfigDict(extra="forbid")

    status: Status = Status.IN_PROGRESS
    attempts: int = 0
    first_started_at: datetime | None = None
    attempt_started_at: datetime | None = None  # set while an attempt is open
    last_seen_at: datetime | None = None  # the attempt's last verb: closes an orphaned one
    seconds_spent: float = 0.0  # closed attempts
    hints_used: int = 0
    checks_run: int = 0
    solved_at: datetime | None = None
    seconds_to_solve: float | None = None
    hints_to_solve: int | None = None
    gave_up_at: datetime | None = None

    def time_spent(self, now: datetime | None = None) -> float:
        open_seconds = 0.0
        if self.attempt_started_at is not None:
            open_seconds = ((now or _now()) - self.attempt_started_at).total_seconds()
        return self.seconds_spent + max(open_seconds, 0.0)

    def open_attempt(self, now: datetime) -> None:
        self.attempts += 1
        self.first_started_at = self.first_started_at or now
        self.attempt_started_at = self.last_seen_at = now

    def close_attempt(self, at: datetime) -> None:
        if self.attempt_started_at is not None:
            self.seconds_spent += max((at - self.attempt_started_at).total_seconds(), 0.0)
        self.attempt_started_at = None


class Progress(BaseModel):
    model_config = ConfigDict(extra="forbid")

    learner: str
    scenarios: dict[str, ScenarioProgress] = Field(default_factory=dict)

    def of(self, scenario_id: str) -> ScenarioProgress | None:
        return self.scenarios.get(scenario_id)

    def status(self, scenario_id: str) -> Status:
        entry = self.of(scenario_id)
        return entry.status if entry else Status.NOT_STARTED


@dataclass(frozen=True)
class Lesson:
    """A scenario's place in the curriculum, with the learner's progress on it."""

    manifest: Manifest
    family: str
    progress: ScenarioProgress | None
    active: bool  # this learner's scenario on the stack now

    @property
    def status(self) -> Status:
        return self.progress.status if self.progress else Status.NOT_STARTED


@dataclass(frozen=True)
class Checked:
    checks: list[Check]
    progress: ScenarioProgress
    newly_solved: bool


def default_learner() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in this environment (a bare container)
        return "learner"


def family_of(manifest: Manifest) -> str:
    if manifest.family is not None:
        return manifest.family.value
    return Family.REVIEW.value if manifest.kind == Kind.CODE_REVIEW else "other"


def curriculum_order(manifests: list[Manifest]) -> list[Manifest]:
    """Families in their teaching order, then easy before hard, then the catalogue's order."""

    def key(m: Manifest) -> tuple[int, int, str]:
        family = family_of(m)
        rank = FAMILY_ORDER.index(family) if family in FAMILY_ORDER else len(FAMILY_ORDER)
        return rank, DIFFICULTY_ORDER.index(m.difficulty), m.id

    return sorted(manifests, key=key)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


class ProgressStore:
    """``<lab dir>/progress/<learner>.json``, one file per learner."""

    def __init__(self, root: Path):
        self.root = root / "progress"

    def path(self, learner: str) -> Path:
        return self.root / f"{learner}.json"

    def load(self, learner: str) -> Progress:
        path = self.path(learner)
        if not path.exists():
            return Progress(learner=learner)
        return Progress.model_validate_json(path.read_text())

    def save(self, progress: Progress) -> None:
        crypto.write_private(
            self.path(progress.learner), progress.model_dump_json(indent=2).encode()
        )

    def learners(self) -> list[str]:
        return sorted(p.stem for p in self.root.glob("*.json")) if self.root.is_dir() else []


class Learning:
    """Lab mode for one learner on one stack's lab."""

    def __init__(self, lab: Lab, learner: str | None = None):
        self.lab = lab
        self.learner = learner or default_learner()
        if not LEARNER.match(self.learner):
            raise LabError(
                f"learner name {self.learner!r}: use letters, digits, '.', '_' or '-' "
                "(LEARNER=<name>)",
                2,
            )
        self.store = ProgressStore(lab.store.root)
        self.reports_dir = lab.store.root / "reports"

    # --- guards ----------------------------------------------------------------------------

    def _open(self) -> None:
        if self.lab.store.sealed():
            raise LabError(SEALED, 2)

    def _mine(self) -> ActiveScenario:
        """The active scenario, which must be this learner's lab-mode one."""
        state = self.lab.active_state()
        if state is None:
            raise LabError("no scenario is active: `make lab` lists them, `make lab-start`", 2)
        if state.mode != Mode.LAB:
            raise LabError(
                "the active scenario was started for an interview (`make break`): lab mode "
                "leaves it alone; `make reset` ends it",
                2,
            )
        if state.learner != self.learner:
            raise LabError(
                f"the active scenario is {state.learner}'s: they run `make lab-reset "
                f"LEARNER={state.learner}` first",
                2,
            )
        return state

    def _close_orphans(self, progress: Progress, active: ActiveScenario | None) -> bool:
        """An attempt still open although its scenario is no longer active (reset by
        `make reset`, or another verb) ends at the attempt's last verb. True when one did."""
        closed = False
        for scenario_id, entry in progress.scenarios.items():
            mine = (
                active is not None
                and active.mode == Mode.LAB
                and active.learner == self.learner
                and active.scenario_id == scenario_id
            )
            if entry.attempt_started_at is not None and not mine:
                entry.close_attempt(entry.last_seen_at or entry.attempt_started_at)
                closed = True
        return closed

    # --- verbs -----------------------------------------------------------------------------

    def curriculum(self) -> list[Lesson]:
        self._open()
        active = self.lab.active_state()
        progress = self.store.load(self.learner)
        if self._close_orphans(progress, active):
            self.store.save(progress)
        lessons = []
        for manifest in curriculum_order(self.lab.scenarios()):
            lessons.append(
                Lesson(
                    manifest=manifest,
                    family=family_of(manifest),
                    progress=progress.of(manifest.id),
                    active=active is not None
                    and active.mode == Mode.LAB
                    and active.learner == self.learner
                    and active.scenario_id == manifest.id,
                )
            )
        return lessons

    def next_lesson(self) -> Lesson:
        lessons = self.curriculum()
        for wanted in (Status.IN_PROGRESS, Status.NOT_STARTED):
            for lesson in lessons:
                if lesson.status == wanted:
                    return lesson
        raise LabError(
            "every scenario is solved or given up: `make lab-start S=<id>` to do one again", 2
        )

    def start(self, ref: str | None = None, seed: int | None = None) -> tuple[Manifest, str]:
        """Break the chosen scenario (or the next of the curriculum) for this learner; the
        scenario's manifest and its ticket. Starting the active one again shows its ticket."""
        self._open()
        active = self.lab.active_state()
        if active is not None:
            theirs = active.mode == Mode.LAB and active.learner == self.learner
            if not theirs:
                raise LabError(
                    "another scenario is active on this stack: whoever started it ends it "
                    "(`make lab-reset`, or `make reset` for an interview)",
                    2,
                )
            if ref is None:
                ref = active.scenario_id
        if ref is None:
            ref = self.next_lesson().manifest.id
        try:
            manifest = self.lab.catalogue().get(ref).manifest
        except CatalogueError as exc:
            raise LabError(str(exc), 2) from None
        if active is not None and active.scenario_id != manifest.id:
            raise LabError(
                f"you are working on {active.scenario_id} now: `make lab-check`, or "
                "`make lab-reset` to leave it",
                2,
            )
        ticket = self.lab.break_(manifest.id, seed, mode=Mode.LAB, learner=self.learner)
        if active is None:
            progress = self.store.load(self.learner)
            self._close_orphans(progress, None)
            entry = progress.scenarios.setdefault(manifest.id, ScenarioProgress())
            if entry.status == Status.NOT_STARTED:
                entry.status = Status.IN_PROGRESS
            entry.open_attempt(_now())
            self.store.save(progress)
        return manifest, ticket

    def _update(self, state: ActiveScenario) -> tuple[Progress, ScenarioProgress]:
        progress = self.store.load(self.learner)
        entry = progress.scenarios.setdefault(state.scenario_id, ScenarioProgress())
        if entry.attempt_started_at is None:  # progress lost or edited: count from the break
            entry.attempts = max(entry.attempts, 1)
            entry.first_started_at = entry.first_started_at or state.started_at
            entry.attempt_started_at = state.started_at
        entry.last_seen_at = _now()
        return progress, entry

    def hint(self) -> Hint:
        self._open()
        state = self._mine()
        given = self.lab.hint()
        progress, entry = self._update(state)
        if given.text is not None:
            entry.hints_used += 1
        self.store.save(progress)
        return given

    def check(self) -> Checked:
        self._open()
        state = self._mine()
        checks = self.lab.verify()
        progress, entry = self._update(state)
        entry.checks_run += 1
        solved = all(c.ok for c in checks) and entry.status == Status.IN_PROGRESS
        if solved:
            now = _now()
            entry.status = Status.SOLVED
            entry.solved_at = now
            entry.seconds_to_solve = entry.time_spent(now)
            entry.hints_to_solve = entry.hints_used
        self.store.save(progress)
        return Checked(checks, entry, solved)

    def give_up(self) -> str:
        """The interviewer notes (cause, fix, rubric); the scenario counts as given up unless it
        was solved already."""
        self._open()
        state = self._mine()
        notes = self.lab.reveal()
        progress, entry = self._update(state)
        if entry.status != Status.SOLVED:
            entry.status = Status.GAVE_UP
            entry.gave_up_at = entry.gave_up_at or _now()
        self.store.save(progress)
        return notes

    def reset(self) -> str:
        self._open()
        state = self._mine()
        message = self.lab.reset()
        progress, entry = self._update(state)
        entry.close_attempt(_now())
        self.store.save(progress)
        return message

    # --- the report ------------------------------------------------------------------------

    def report(self) -> tuple[Path, Path]:
        """Write the learner's progress as markdown and HTML; their paths."""
        lessons = self.curriculum()
        document = progress_document(self.learner, lessons, _now())
        self.reports_dir.mkdir(parents=True, exist_ok=True)
        markdown = self.reports_dir / f"{self.learner}.md"
        page = self.reports_dir / f"{self.learner}.html"
        markdown.write_text(document.to_markdown())
        page.write_text(document.to_html())
        return markdown, page


def progress_document(learner: str, lessons: list[Lesson], now: datetime) -> Document:
    """The manager's page: totals, the curriculum with the learner's state, what was practised."""
    entries = [lesson.progress for lesson in lessons if lesson.progress]
    solved = [lesson for lesson in lessons if lesson.status == Status.SOLVED]
    gave_up = [lesson for lesson in lessons if lesson.status == Status.GAVE_UP]
    doing = [lesson for lesson in lessons if lesson.status == Status.IN_PROGRESS]
    spent = sum(entry.time_spent(now) for entry in entries)
    doc = Document(f"Lab progress: {learner}")
    doc.paragraph(f"Written {now:%Y-%m-%d %H:%M} UTC by `make lab-report`.")
    doc.bullets(
        [
            f"**solved**: {len(solved)} of {len(lessons)} scenarios"
            + (f" (given up: {len(gave_up)})" if gave_up else ""),
            f"**in progress**: {len(doing)}",
            f"**time spent**: {format_duration(spent)}",
            f"**hints used**: {sum(entry.hints_used for entry in entries)}",
            f"**checks run**: {sum(entry.checks_run for entry in entries)}",
        ]
    )
    doc.heading("Curriculum")
    rows = []
    for lesson in lessons:
        entry = lesson.progress
        rows.append(
            [
                lesson.family,
                f"{lesson.manifest.id} {lesson.manifest.title}",
                lesson.manifest.difficulty.value,
                lesson.status.value + (" (now)" if lesson.active else ""),
                format_duration(entry.time_spent(now)) if entry else "-",
                str(entry.hints_used) if entry else "-",
                str(entry.checks_run) if entry else "-",
                format_duration(entry.seconds_to_solve) if entry else "-",
            ]
        )
    doc.table(
        [
            "family",
            "scenario",
            "difficulty",
            "state",
            "time spent",
            "hints",
            "checks",
            "solved in",
        ],
        rows,
    )
    finished = [lesson for lesson in lessons if lesson.status in (Status.SOLVED, Status.GAVE_UP)]
    if finished:
        doc.heading("What was practised")
        doc.bullets(
            [
                f"{lesson.manifest.id} ({lesson.status.value}): "
                + "; ".join(lesson.manifest.concepts)
                + f" — components: {', '.join(lesson.manifest.components)}"
                for lesson in finished
            ]
        )
    return doc
