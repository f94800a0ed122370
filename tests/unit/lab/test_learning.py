"""Lab mode on the toy catalogue: the curriculum, a learner's progress across fresh objects and
processes, the refusals (sealed lab, someone else's scenario), give-up and the report."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from foundation.settings import REPO_ROOT
from lab import learning
from lab.engine import LabError
from lab.learning import Learning, Status, curriculum_order
from tests.unit.lab.conftest import MANIFEST, PASSPHRASE, SLUG, TITLE, git
from tests.unit.lab.test_cli import cli, environment

SECOND_SLUG = "02-toy-chart-is-empty"
SECOND_TITLE = "The toy chart has been empty since the weekend"


@pytest.fixture
def two(toy):
    """The toy catalogue with a second scenario: family 'features' (taught first), medium."""
    source = toy.repo / "broken_scenarios" / SLUG
    folder = toy.repo / "broken_scenarios" / SECOND_SLUG
    folder.mkdir()
    for path in source.iterdir():
        (folder / path.name).write_text(path.read_text())
    (folder / "scenario.yaml").write_text(
        MANIFEST.replace('id: "01"', 'id: "02"')
        .replace(TITLE, SECOND_TITLE)
        .replace("difficulty: easy", "difficulty: medium\nfamily: features")
    )
    (source / "scenario.yaml").write_text(
        MANIFEST.replace("difficulty: easy", "difficulty: easy\nfamily: serving")
    )
    git(toy.repo, "add", "-A")
    git(toy.repo, "commit", "-q", "-m", "a second toy")
    return toy


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, minutes: float) -> None:
        self.now += timedelta(minutes=minutes)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(learning, "_now", clock)
    return clock


def test_the_curriculum_walks_families_in_teaching_order_then_easy_first(two) -> None:
    lessons = Learning(two.lab(), "ada").curriculum()
    assert [(lesson.family, lesson.manifest.id) for lesson in lessons] == [
        ("features", "02"),
        ("serving", "01"),
    ]
    assert {lesson.status for lesson in lessons} == {Status.NOT_STARTED}
    manifests = [lesson.manifest for lesson in lessons]
    easy = manifests[0].model_copy(update={"difficulty": "easy", "id": "03"})
    assert [m.id for m in curriculum_order([*manifests, easy])] == ["03", "02", "01"]


def test_progress_survives_fresh_lab_objects_and_a_fresh_process(two, clock) -> None:
    manifest, ticket = Learning(two.lab(), "ada").start()  # the next one: 02
    assert manifest.id == "02" and ticket.startswith("# Ticket OPS-1234")
    clock.advance(5)
    assert Learning(two.lab(), "ada").hint().number == 1
    clock.advance(7)
    assert not Learning(two.lab(), "ada").check().newly_solved

    # the learner fixes it, and checks from another process (what `make lab-check` runs)
    (two.home / "toy.conf").write_text("green")
    checked = cli(two, "lab", "learn", "check", "--learner", "ada")
    assert checked.returncode == 0, checked.stderr
    assert "2 of 2 checks pass" in checked.stdout and "solved in" in checked.stdout

    clock.advance(3)
    Learning(two.lab(), "ada").reset()
    (lesson, other) = Learning(two.lab(), "ada").curriculum()
    assert lesson.manifest.id == "02" and lesson.status == Status.SOLVED
    entry = lesson.progress
    assert (entry.attempts, entry.hints_used, entry.checks_run, entry.hints_to_solve) == (
        1,
        1,
        2,
        1,
    )
    assert entry.time_spent(clock.now) == pytest.approx(15 * 60)
    assert entry.attempt_started_at is None  # reset closed the attempt: the clock stopped
    assert other.status == Status.NOT_STARTED
    assert Learning(two.lab(), "grace").curriculum()[0].status == Status.NOT_STARTED
    assert (two.home / "lab" / "progress" / "ada.json").is_file()

    listing = cli(two, "lab", "learn", "list", "--learner", "ada")
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if SECOND_TITLE in line)
    assert "solved" in row and row.split()[-1] == "1"  # hints used
    assert "next: `make lab-start` starts 01" in listing.stdout
    assert Learning(two.lab(), "ada").start()[0].id == "01"


def test_a_sealed_lab_refuses_lab_mode_with_a_clear_message(two) -> None:
    two.lab().seal(PASSPHRASE)
    for verb in ("curriculum", "start", "hint", "check", "give_up", "reset", "report"):
        with pytest.raises(LabError, match="sealed for an interview: lab mode is off"):
            getattr(Learning(two.lab(PASSPHRASE), "ada"), verb)()
    result = cli(two, "lab", "learn", "start", "--learner", "ada")
    assert result.returncode == 2 and "sealed for an interview" in result.stderr
    assert result.stdout == ""
    assert not (two.home / "lab" / "progress").exists()


def test_lab_mode_leaves_an_interview_and_another_learners_scenario_alone(two) -> None:
    two.lab().break_("01", seed=0)  # an interviewer's `make break`
    with pytest.raises(LabError, match="started for an interview"):
        Learning(two.lab(), "ada").hint()
    with pytest.raises(LabError, match="another scenario is active"):
        Learning(two.lab(), "ada").start("02")
    two.lab().reset()
    Learning(two.lab(), "ada").start("01", seed=0)
    with pytest.raises(LabError, match="ada's"):
        Learning(two.lab(), "grace").check()
    with pytest.raises(LabError, match="another scenario is active"):
        two.lab().break_("01", seed=0)  # interview mode does not take over a learner's break
    with pytest.raises(LabError, match="working on 01"):
        Learning(two.lab(), "ada").start("02")
    again = Learning(two.lab(), "ada").start()  # the active one's ticket again
    assert again[0].id == "01" and again[1].startswith("# Ticket")
    assert Learning(two.lab(), "ada").curriculum()[1].progress.attempts == 1


def test_give_up_asks_first_then_shows_the_notes_and_counts_as_given_up(two) -> None:
    assert cli(two, "lab", "learn", "start", "01", "--learner", "ada").returncode == 0
    declined = cli(two, "lab", "learn", "giveup", "--learner", "ada", stdin="n\n")
    assert declined.returncode != 0 and "Root cause" not in declined.stdout
    lesson = Learning(two.lab(), "ada").curriculum()[1]
    assert lesson.status == Status.IN_PROGRESS
    shown = cli(two, "lab", "learn", "giveup", "--learner", "ada", "--yes")
    assert shown.returncode == 0, shown.stderr
    assert "## Root cause" in shown.stdout and "## Rubric" in shown.stdout
    assert Learning(two.lab(), "ada").curriculum()[1].status == Status.GAVE_UP
    (two.home / "toy.conf").write_text("green")
    assert Learning(two.lab(), "ada").check().newly_solved is False  # stays given up


def test_the_report_is_markdown_and_html_a_manager_reads(two, clock) -> None:
    Learning(two.lab(), "ada").start("02", seed=0)
    Learning(two.lab(), "ada").hint()
    (two.home / "toy.conf").write_text("green")
    clock.advance(20)
    Learning(two.lab(), "ada").check()
    Learning(two.lab(), "ada").reset()
    Learning(two.lab(), "ada").start("01", seed=0)
    clock.advance(10)
    markdown, page = Learning(two.lab(), "ada").report()
    assert markdown == two.home / "lab" / "reports" / "ada.md"
    text = markdown.read_text()
    assert text.startswith("# Lab progress: ada\n")
    assert "**solved**: 1 of 2 scenarios" in text and "**time spent**: 30 min" in text
    assert f"| features | 02 {SECOND_TITLE} | medium | solved | 20 min | 1 | 1 | 20 min |" in text
    assert f"| serving | 01 {TITLE} | easy | in progress (now) | 10 min | 0 | 0 | - |" in text
    # the concepts of a solved scenario are named; those of one in progress are not
    assert "02 (solved): reading a config file" in text
    assert "01 (" not in text.split("What was practised")[1]
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<table>" in html
    assert "<td>in progress (now)</td>" in html and "<strong>solved</strong>" in html
    result = cli(two, "lab", "learn", "report", "--learner", "ada")
    assert result.returncode == 0 and str(markdown) in result.stdout


def test_an_attempt_reset_outside_lab_mode_stops_counting_at_its_last_verb(two, clock) -> None:
    Learning(two.lab(), "ada").start("01", seed=0)
    clock.advance(4)
    Learning(two.lab(), "ada").hint()
    two.lab().reset()  # `make reset`, not `make lab-reset`
    clock.advance(60)
    entry = Learning(two.lab(), "ada").curriculum()[1].progress
    assert entry.attempt_started_at is None
    assert entry.time_spent(clock.now) == pytest.approx(4 * 60)


def test_learner_names_are_safe_file_names(two) -> None:
    with pytest.raises(LabError, match="learner name"):
        Learning(two.lab(), "../ada")


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_the_make_targets_call_lab_mode(two) -> None:
    def make(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", "--no-print-directory", "-C", str(REPO_ROOT), *args, "LEARNER=ada"],
            env=environment(two),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    started = make("lab-start", "S=01", "SEED=0")
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith(f"lab mode, ada: 01 {TITLE}")
    assert make("lab-hint").stdout.startswith("hint 1 of 3")
    checked = make("lab-check")
    assert checked.returncode != 0 and "1 of 2 checks pass" in checked.stdout
    assert "Root cause" in make("lab-giveup", "YES=1").stdout
    assert make("lab-reset").returncode == 0
    listing = make("lab")
    assert "gave up" in listing.stdout and "next: `make lab-start` starts 02" in listing.stdout
    assert "ada.html" in make("lab-report").stdout
