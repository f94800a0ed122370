"""The scorecard: rendered from a fixture session (numbers, times, hints, levels, marks,
follow-ups), and end to end on the toy catalogue (after reset, listed, behind the passphrase)."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from foundation.settings import REPO_ROOT
from lab.record import CheckOutcome, Event, EventKind, Session
from lab.scorecard import MarkError, Rubric, clock, parse_marks, scorecard_document, write
from tests.unit.lab.conftest import PASSPHRASE, TITLE
from tests.unit.lab.test_cli import cli, environment

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
RUBRIC = """\
Grade each dimension separately.

| dimension | junior | mid | senior |
|---|---|---|---|
| detection | runs the monitors | connects the reports | reads it as a pipeline problem |
| localisation | finds the old store | finds the held job | knows which process runs what |
| root cause | "stale features" | "the job is paused" | explains the degradation |
| mitigation | refreshes once | resumes the job | adds an alert on the job |

- **Senior**: impact and prevention.
"""


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def checks(*oks: bool) -> list[CheckOutcome]:
    return [
        CheckOutcome(description="the store is fresh", ok=oks[0], level="fixed"),
        CheckOutcome(description="the refresh runs tonight", ok=oks[1], level="prevented"),
    ]


def fixture_session() -> Session:
    return Session(
        id="20260302-140000",
        scenario_id="05",
        title="Recall decaying since yesterday, no deploy and no model change",
        kind="incident",
        difficulty="easy",
        seniority=["junior", "mid", "senior"],
        time_box_minutes=30,
        seed=3,
        variant={"hours_stale": 40},
        started_at=T0,
        ended_at=at(41),
        hints_total=4,
        rubric=RUBRIC,
        follow_ups=["How stale may each view be?", "Why did recall monitoring not catch it?"],
        events=[
            Event(kind=EventKind.BREAK, at=at(0)),
            Event(kind=EventKind.TICKET, at=at(1)),
            Event(kind=EventKind.COMMAND, at=at(3), command="fraudlab monitor"),
            Event(kind=EventKind.COMMAND, at=at(4), command="fraudlab status"),
            Event(kind=EventKind.VERIFY, at=at(9), checks=checks(False, False)),
            Event(kind=EventKind.HINT, at=at(12), rung=1, total=4),
            Event(kind=EventKind.COMMAND, at=at(13), command="fraudlab monitor"),
            Event(kind=EventKind.VERIFY, at=at(18.5), checks=checks(True, False), reached="fixed"),
            Event(kind=EventKind.HINT, at=at(20), rung=2, total=4),
            Event(
                kind=EventKind.VERIFY, at=at(27), checks=checks(True, True), reached="prevented"
            ),
            Event(kind=EventKind.RESET, at=at(40)),
            Event(kind=EventKind.MARK, at=at(41), dimension="detection", level="mid"),
            Event(kind=EventKind.MARK, at=at(41), dimension="root cause", level="junior"),
            Event(kind=EventKind.MARK, at=at(41), dimension="root cause", level="mid"),
            Event(kind=EventKind.MARK, at=at(41), dimension="overall", level="mid"),
            Event(kind=EventKind.NOTE, at=at(41), text="resumed the job unprompted"),
        ],
    )


def test_a_scorecard_renders_times_hints_levels_marks_and_follow_ups(tmp_path) -> None:
    markdown, page = write(fixture_session(), tmp_path)
    text = markdown.read_text()
    assert markdown.name == "scorecard-20260302-140000.md"
    assert text.startswith("# Scorecard: 05 Recall decaying since yesterday")
    assert "| time to first correct check | 26:00 after the ticket (verify 3) |" in text
    assert "| verify attempts | 3 |" in text
    assert "| hints used | 2 of 4 (rung 1 at 11:00, rung 2 at 19:00) |" in text
    assert "| answer revealed | no |" in text
    assert "| highest level reached | prevented |" in text
    assert "| commands recorded | 3 (`fraudlab monitor` ×2, `fraudlab status` ×1) |" in text
    assert "| the store is fresh | fixed | 17:30 |" in text
    assert "| the refresh runs tonight | prevented | 26:00 |" in text
    # the rubric's rows with the interviewer's marks (the latest mark of a row wins)
    assert (
        "| detection | runs the monitors | connects the reports | reads it as a pipeline" in text
    )
    assert text.count("| **mid** |") == 2
    assert (
        '| root cause | "stale features" | "the job is paused" | explains the degradation |'
        in (text)
    )
    assert (
        "| mitigation | refreshes once | resumes the job | adds an alert on the job | - |" in text
    )
    assert "**overall**: mid" in text
    assert "note (40:00): resumed the job unprompted" in text
    assert "- **Senior**: impact and prevention." in text
    # the timeline, in order, in time after the ticket
    timeline = text.split("## Timeline")[1].split("## Follow-up questions")[0]
    assert timeline.index("| 8:00 | 14:09:00 | verify 1: 0 of 2 checks OK") < timeline.index(
        "| 11:00 | 14:12:00 | hint 1 of 4 given |"
    )
    assert "verify 2: 1 of 2 checks OK, reached fixed — NO: the refresh runs tonight" in timeline
    assert "| 2:00 | 14:03:00 | `fraudlab monitor` |" in timeline
    assert "marked" not in timeline  # marks and notes are under Marks
    assert "- How stale may each view be?" in text.split("## Follow-up questions")[1]
    html = page.read_text()
    assert "<td><strong>mid</strong></td>" in html and "<h2>Follow-up questions</h2>" in html


def test_a_session_never_correct_says_how_far_it_got() -> None:
    session = fixture_session()
    session.events = [e for e in session.events if e.kind != EventKind.VERIFY or e.at < at(20)]
    text = scorecard_document(session).to_markdown()
    assert "| time to first correct check | not reached (best: 1 of 2 checks at 17:30) |" in text
    assert "| highest level reached | fixed |" in text


def test_marks_name_a_rubric_row_or_overall_and_a_level() -> None:
    rubric = Rubric.parse(RUBRIC)
    assert rubric.dimensions == ["detection", "localisation", "root cause", "mitigation"]
    marks = parse_marks(["detection=Mid", "root=senior", "overall=junior"], rubric)
    assert [(m.dimension, m.level) for m in marks] == [
        ("detection", "mid"),
        ("root cause", "senior"),
        ("overall", "junior"),
    ]
    with pytest.raises(MarkError, match="junior, mid, senior"):
        parse_marks(["detection=expert"], rubric)
    with pytest.raises(MarkError, match="detection, localisation, root cause, mitigation"):
        parse_marks(["charisma=senior"], rubric)
    assert clock(59.6) == "1:00" and clock(3725) == "1:02:05"


def test_make_scorecard_after_reset_with_marks_and_a_list_of_sessions(toy) -> None:
    assert cli(toy, "lab", "break", "01", "--seed", "0").returncode == 0
    assert cli(toy, "lab", "verify").returncode == 1
    assert cli(toy, "lab", "hint").returncode == 0
    (toy.home / "toy.conf").write_text("green")
    assert cli(toy, "lab", "verify").returncode == 0
    assert cli(toy, "lab", "reset").returncode == 0

    result = cli(
        toy,
        "lab",
        "scorecard",
        "--mark",
        "detection=senior",
        "--mark",
        "overall=mid",
        "--note",
        "fixed it at the config",
    )
    assert result.returncode == 0, result.stderr
    assert "first correct check" in result.stdout and "1 hint(s)" in result.stdout
    markdown = next((toy.home / "lab" / "scorecards").glob("scorecard-*.md"))
    text = markdown.read_text()
    assert f"# Scorecard: 01 {TITLE}" in text and "| hints used | 1 of 3 (rung 1 at" in text
    assert "| detection | sees it | sees it | sees it | **senior** |" in text
    assert "**overall**: mid" in text and "fixed it at the config" in text
    assert "- Why green?" in text
    # the marks are kept with the session: rendering again without flags keeps them
    again = cli(toy, "lab", "scorecard", "--no-ask")
    assert again.returncode == 0 and "**senior**" in markdown.read_text()

    assert cli(toy, "lab", "break", "01", "--seed", "1").returncode == 0
    listing = cli(toy, "lab", "scorecard", "--list")
    lines = listing.stdout.splitlines()
    assert lines[0].split()[:2] == ["session", "scenario"] and len(lines) == 3
    assert "(active)" in lines[1] and "(active)" not in lines[2]
    assert lines[2].split()[-3:] == ["2", "1/3", "-"]  # verifies, hints, level


def test_the_scorecard_is_for_the_interviewer_only_while_sealed(toy) -> None:
    cli(toy, "lab", "break", "01", "--seed", "0")
    assert cli(toy, "lab", "seal", passphrase=PASSPHRASE).returncode == 0
    refused = cli(toy, "lab", "scorecard", "--no-ask", stdin="not it\n")
    assert refused.returncode == 3 and "wrong passphrase" in refused.stderr
    active = cli(toy, "lab", "scorecard", "--no-ask", passphrase=PASSPHRASE)
    assert active.returncode == 1 and "still active on a sealed machine" in active.stderr
    assert not (toy.home / "lab" / "scorecards").exists()
    cli(toy, "lab", "reset", passphrase=PASSPHRASE)
    done = cli(toy, "lab", "scorecard", "--no-ask", passphrase=PASSPHRASE)
    assert done.returncode == 0, done.stderr
    text = next((toy.home / "lab" / "scorecards").glob("*.md")).read_text()
    assert "| detection | sees it |" in text and "The toy config serves" not in text


def test_the_interviewer_is_asked_for_a_mark_per_rubric_row(toy) -> None:
    cli(toy, "lab", "break", "01", "--seed", "0")
    cli(toy, "lab", "reset")
    asked = cli(toy, "lab", "scorecard", "--ask", stdin="mid\nexpert\nsolid work\n")
    assert asked.returncode == 0, asked.stderr
    assert "detection (junior/mid/senior" in asked.stderr and "overall (" in asked.stderr
    assert "left as it was" in asked.stderr  # 'expert' is no level
    text = next((toy.home / "lab" / "scorecards").glob("*.md")).read_text()
    assert "| detection | sees it | sees it | sees it | **mid** |" in text
    assert "**overall**: not marked" in text and "note (" in text and "solid work" in text


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_scorecard_passes_marks_and_a_note_as_typed(toy) -> None:
    cli(toy, "lab", "break", "01", "--seed", "0")
    cli(toy, "lab", "reset")

    def make(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", "--no-print-directory", "-C", str(REPO_ROOT), "scorecard", *args],
            env=environment(toy),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    made = make("MARK=detection=mid overall=senior", 'NOTE=said "check the config"; it\'s `fine`')
    assert made.returncode == 0, made.stderr
    text = next((toy.home / "lab" / "scorecards").glob("*.md")).read_text()
    assert "**mid** |" in text and "**overall**: senior" in text
    assert 'said "check the config"; it\'s `fine`' in text
    assert "1/3" not in make("LIST=1").stdout and "0/3" in make("LIST=1").stdout
