"""The scorecard: one page per session — what the record says, the rubric, the interviewer's
marks — in markdown and HTML.

Owns: the facts a scorecard states from a session's timeline (time from the ticket to the first
verify with every check OK, verify attempts, hints by rung and time, the reveal, the highest
level reached, the commands run), the rubric read from the interviewer notes' Rubric section
(its table of dimensions by junior / mid / senior, and the text around it), the interviewer's
marks (``dimension=level``, the rubric's dimensions or ``overall``), and the page itself.

Must not: read the lab's files or keys (the engine hands it a ``Session``), or prompt (the CLI
asks for marks interactively).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from lab.context import Level, summarise_levels
from lab.document import Block, Document, Table, parse_markdown
from lab.record import Event, EventKind, Session
from lab.state import Mode

RUBRIC_LEVELS = ("junior", "mid", "senior")
OVERALL = "overall"


class MarkError(ValueError):
    """A mark the rubric cannot hold; the message says which and what would fit."""


@dataclass(frozen=True)
class Rubric:
    """The Rubric section: its table (a row per dimension, a column per level) and the rest."""

    table: Table | None
    text: list[Block]  # the other blocks (strong answers by level ...)

    @property
    def dimensions(self) -> list[str]:
        return [row[0] for row in self.table.rows] if self.table else []

    @classmethod
    def parse(cls, markdown: str) -> Rubric:
        blocks = parse_markdown(markdown)
        table = next((b for b in blocks if isinstance(b, Table)), None)
        return cls(table, [b for b in blocks if b is not table])


@dataclass
class Facts:
    """What a session's timeline says, in numbers."""

    ticket_at: datetime
    verifies: list[Event] = field(default_factory=list)
    hints: list[Event] = field(default_factory=list)
    commands: list[Event] = field(default_factory=list)
    first_correct: Event | None = None  # the first verify with every check OK
    revealed_at: datetime | None = None
    reset_at: datetime | None = None
    highest_level: str | None = None
    graded_by_level: bool = False
    first_ok: dict[str, datetime] = field(default_factory=dict)  # check → first OK
    levels: dict[str, str | None] = field(default_factory=dict)  # check → its level

    @classmethod
    def of(cls, session: Session) -> Facts:
        ticket = next((e.at for e in session.events if e.kind == EventKind.TICKET), None)
        facts = cls(ticket_at=ticket or session.started_at)
        order = list(Level)
        for event in session.events:
            if event.kind == EventKind.VERIFY:
                facts.verifies.append(event)
                if (
                    facts.first_correct is None
                    and event.checks
                    and all(c.ok for c in event.checks)
                ):
                    facts.first_correct = event
                for check in event.checks:
                    facts.levels.setdefault(check.description, check.level)
                    if check.ok:
                        facts.first_ok.setdefault(check.description, event.at)
                summary = summarise_levels(event.checks)
                if summary is not None:
                    facts.graded_by_level = True
                    reached = summary.reached
                    if reached is not None and (
                        facts.highest_level is None
                        or order.index(reached) > order.index(Level(facts.highest_level))
                    ):
                        facts.highest_level = reached.value
            elif event.kind == EventKind.HINT:
                facts.hints.append(event)
            elif event.kind == EventKind.COMMAND:
                facts.commands.append(event)
            elif event.kind == EventKind.REVEAL and facts.revealed_at is None:
                facts.revealed_at = event.at
            elif event.kind == EventKind.RESET:
                facts.reset_at = event.at
        return facts

    def since_ticket(self, at: datetime) -> str:
        return clock(max((at - self.ticket_at).total_seconds(), 0.0))


def clock(seconds: float) -> str:
    """``12:05`` (minutes:seconds), ``1:02:05`` past the hour."""
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def parse_marks(values: list[str], rubric: Rubric) -> list[Event]:
    """``dimension=level`` flags as mark events; a dimension is a rubric row (or a prefix of
    one: ``root=senior``) or ``overall``, a level one of junior, mid, senior."""
    events = []
    dimensions = rubric.dimensions
    for value in values:
        name, _, level = value.partition("=")
        name, level = name.strip().lower(), level.strip().lower()
        if level not in RUBRIC_LEVELS:
            raise MarkError(f"mark {value!r}: the level is one of {', '.join(RUBRIC_LEVELS)}")
        matches = [d for d in dimensions if d.lower() == name] or [
            d for d in dimensions if d.lower().startswith(name)
        ]
        if name == OVERALL:
            matches = [OVERALL]
        if len(matches) != 1:
            known = ", ".join([*dimensions, OVERALL])
            raise MarkError(f"mark {value!r}: the dimension is one of {known}")
        events.append(Event(kind=EventKind.MARK, dimension=matches[0], level=level))
    return events


def marks_of(session: Session) -> tuple[dict[str, str], list[Event]]:
    """The latest mark per dimension, and every note, in order."""
    marks: dict[str, str] = {}
    notes = []
    for event in session.events:
        if event.kind == EventKind.MARK and event.dimension and event.level:
            marks[event.dimension] = event.level
        elif event.kind == EventKind.NOTE and event.text:
            notes.append(event)
    return marks, notes


def _describe(event: Event, facts: Facts, verify_number: dict[int, int]) -> str:
    if event.kind == EventKind.BREAK:
        return "break: baseline checked, fault injected"
    if event.kind == EventKind.TICKET:
        return "ticket shown"
    if event.kind == EventKind.HINT:
        return f"hint {event.rung} of {event.total} given"
    if event.kind == EventKind.VERIFY:
        passed = sum(c.ok for c in event.checks)
        failing = [c.description for c in event.checks if not c.ok]
        text = f"verify {verify_number[id(event)]}: {passed} of {len(event.checks)} checks OK"
        if event.reached:
            text += f", reached {event.reached}"
        return text + (f" — NO: {'; '.join(failing)}" if failing else "")
    if event.kind == EventKind.REVEAL:
        return "answer revealed"
    if event.kind == EventKind.RESET:
        return "reset to the healthy baseline"
    if event.kind == EventKind.COMMAND:
        return f"`{event.command}`"
    if event.kind == EventKind.MARK:
        return f"marked {event.dimension}: {event.level}"
    return f"note: {event.text}"


def scorecard_document(session: Session) -> Document:
    """The page: the session, its numbers, the rubric with the marks, the timeline and the
    follow-up questions."""
    facts = Facts.of(session)
    rubric = Rubric.parse(session.rubric)
    marks, notes = marks_of(session)
    doc = Document(f"Scorecard: {session.scenario_id} {session.title}")

    who = "interview" if session.mode == Mode.INTERVIEW else f"lab mode, {session.learner}"
    end = session.ended_at or facts.reset_at
    span = (
        f"{session.started_at:%Y-%m-%d %H:%M} – {end:%H:%M} UTC"
        if end
        else f"{session.started_at:%Y-%m-%d %H:%M} UTC, still active"
    )
    doc.bullets(
        [
            f"**session** {session.id} ({who}); seed {session.seed}; {span}",
            (
                f"**scenario** {session.kind.replace('_', ' ')}, {session.difficulty}, for "
                f"{', '.join(session.seniority)}; time box {session.time_box_minutes} min"
            ),
        ]
    )

    doc.heading("Summary")
    if facts.first_correct is not None:
        number = facts.verifies.index(facts.first_correct) + 1
        first = f"{facts.since_ticket(facts.first_correct.at)} after the ticket (verify {number})"
    elif facts.verifies:
        best = max(facts.verifies, key=lambda e: sum(c.ok for c in e.checks))
        first = (
            f"not reached (best: {sum(c.ok for c in best.checks)} of {len(best.checks)} checks "
            f"at {facts.since_ticket(best.at)})"
        )
    else:
        first = "not reached (no verify run)"
    hints = (
        ", ".join(f"rung {e.rung} at {facts.since_ticket(e.at)}" for e in facts.hints) or "none"
    )
    level = (
        (facts.highest_level or "none")
        if facts.graded_by_level
        else "not graded by level (this scenario's checks carry none)"
    )
    commands = Counter(e.command for e in facts.commands)
    rows = [
        ["time to first correct check", first],
        ["verify attempts", str(len(facts.verifies))],
        ["hints used", f"{len(facts.hints)} of {session.hints_total} ({hints})"],
        [
            "answer revealed",
            f"at {facts.since_ticket(facts.revealed_at)}" if facts.revealed_at else "no",
        ],
        ["highest level reached", level],
        [
            "commands recorded",
            f"{len(facts.commands)}"
            + (
                " (" + ", ".join(f"`{c}` ×{n}" for c, n in commands.most_common()) + ")"
                if commands
                else ""
            ),
        ],
        ["time in session", clock(((end or _now()) - session.started_at).total_seconds())],
    ]
    doc.table(["", ""], rows)

    if facts.levels:
        doc.heading("Checks")
        doc.table(
            ["check", "level", "first OK (after the ticket)"],
            [
                [
                    description,
                    facts.levels[description] or "-",
                    facts.since_ticket(facts.first_ok[description])
                    if description in facts.first_ok
                    else "never",
                ]
                for description in facts.levels
            ],
        )

    doc.heading("Marks")
    if rubric.table is not None:
        header = [*rubric.table.header, "mark"]
        rows = [
            [*row, f"**{marks[row[0]]}**" if row[0] in marks else "-"] for row in rubric.table.rows
        ]
        doc.table(header, rows)
    doc.paragraph(f"**overall**: {marks.get(OVERALL, 'not marked')}")
    unknown = sorted(set(marks) - {*rubric.dimensions, OVERALL})
    if unknown:
        doc.bullets([f"{d}: {marks[d]}" for d in unknown])
    if notes:
        doc.bullets([f"note ({facts.since_ticket(n.at)}): {n.text}" for n in notes])
    if rubric.text:
        doc.heading("What each level looks like", 3)
        doc.blocks += rubric.text

    doc.heading("Timeline")
    numbers = {id(e): i for i, e in enumerate(facts.verifies, 1)}
    doc.table(
        ["after the ticket", "UTC", "event"],
        [
            [
                facts.since_ticket(e.at) if e.at >= facts.ticket_at else "-",
                f"{e.at:%H:%M:%S}",
                _describe(e, facts, numbers),
            ]
            for e in session.events
            if e.kind not in (EventKind.MARK, EventKind.NOTE)  # shown under Marks
        ],
    )

    doc.heading("Follow-up questions")
    if session.follow_ups:
        doc.bullets(session.follow_ups)
    else:
        doc.paragraph("none in the notes")
    return doc


def _now() -> datetime:
    return datetime.now(UTC)


def write(session: Session, out_dir: Path) -> tuple[Path, Path]:
    """``scorecard-<session>.md`` and ``.html`` in ``out_dir``; their paths."""
    document = scorecard_document(session)
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = out_dir / f"scorecard-{session.id}.md"
    page = out_dir / f"scorecard-{session.id}.html"
    markdown.write_text(document.to_markdown())
    page.write_text(document.to_html())
    return markdown, page


def session_line(session: Session) -> list[str]:
    """A row of ``make scorecard LIST=1``."""
    facts = Facts.of(session)
    end = session.ended_at or facts.reset_at
    who = "interview" if session.mode == Mode.INTERVIEW else f"lab: {session.learner}"
    first = facts.since_ticket(facts.first_correct.at) if facts.first_correct else "-"
    return [
        session.id + ("" if session.finished else " (active)"),
        f"{session.scenario_id} {session.title}",
        who,
        clock(((end or _now()) - session.started_at).total_seconds()),
        first,
        str(len(facts.verifies)),
        f"{len(facts.hints)}/{session.hints_total}",
        facts.highest_level or "-",
    ]


SESSION_COLUMNS = [
    "session",
    "scenario",
    "mode",
    "length",
    "first correct",
    "verifies",
    "hints",
    "level",
]
