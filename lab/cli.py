"""``fraudlab lab …``: the scenario verbs on the command line (the Makefile calls these).

Owns: argument parsing, the passphrase prompt and the wording of what each verb prints.
Candidate-facing verbs (``break``'s ticket, ``verify``) print nothing that names a scenario;
interviewer verbs (``hint``, ``reveal``, ``reset``, ``list``) ask for the passphrase while the
lab is sealed. Errors go to stderr with the next step; exit codes: 0 done, 1 failed/NO,
2 nothing to act on or bad usage, 3 wrong passphrase.

Containerised stack (``FRAUDLAB_STACK=compose``): on the host, each verb runs in a one-off
lab runner container (``control.compose.lab``) — break and reset in ``lab-stack``, which holds
the Docker socket, the others in ``lab``, which does not (verify runs the candidate's code);
inside the runner the verbs run here; anywhere else inside the stack (the candidate's
workstation) they refuse: the lab is not there.

Lab mode (``fraudlab lab learn …``, the ``make lab*`` targets): the learner's verbs, no
passphrase, refused on a sealed lab; the learner is ``--learner`` (``LEARNER=``), by default
the user running the command.

Must not: contain engine logic (``lab.engine``, ``lab.learning``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any

import typer

from foundation.settings import get_settings

lab_app = typer.Typer(
    help="Interview scenarios: list, break, verify, hint, reveal, reset, seal, unseal; "
    "`learn`: lab mode.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

PASSPHRASE_VARIABLE = "FRAUDLAB_LAB_PASSPHRASE"


def record_command(group: Any, argv: list[str]) -> None:
    """Called by the ``fraudlab`` command before any command runs: while a scenario is active,
    note the command's name and time in the session's record (``lab.record``). Cheap when
    nothing is active — one ``stat`` — and silent whatever happens."""
    try:
        lab_dir = get_settings().lab_state_dir
        if not (lab_dir / "state.enc").exists():
            return
        from lab.record import command_words, note_command

        note_command(lab_dir, command_words(group, argv))
    except Exception:  # noqa: BLE001 - recording must never stop the command itself
        return


def _passphrase(confirm: bool = False) -> str:
    secret = getattr(get_settings(), "lab_passphrase", None)
    if secret is not None:
        return secret.get_secret_value()
    return typer.prompt("lab passphrase", hide_input=True, confirmation_prompt=confirm, err=True)


def _lab():
    from lab.engine import Lab

    return Lab(get_settings(), passphrase=_passphrase)


def _run_where_the_lab_is(args: list[str], stack: bool = False) -> None:
    """Containerised stack: hand the verb to the lab runner (from the host) or refuse (in a
    container without the lab); returns when the verb is to run in this process."""
    settings = get_settings()
    if settings.stack != "compose":
        return
    if not settings.in_container:
        from control import compose

        raise typer.Exit(compose.lab(settings, args, stack=stack))
    if settings.lab_catalogue is None:
        typer.echo(
            "✗ the scenario lab does not run in this container: the interviewer runs its verbs"
            " (`make verify STACK=compose` included) from the host",
            err=True,
        )
        raise typer.Exit(2)


def _reports_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from lab.catalogue import CatalogueError
        from lab.engine import LabError

        try:
            return command(*args, **kwargs)
        except LabError as exc:
            typer.echo(f"✗ {exc}", err=True)
            raise typer.Exit(exc.code) from None
        except CatalogueError as exc:
            typer.echo(f"✗ catalogue: {exc}", err=True)
            raise typer.Exit(2) from None

    return wrapper


@lab_app.command("list")
@_reports_errors
def list_() -> None:
    """List the scenarios: id, title, kind, difficulty, seniority, time box (never the cause)."""
    _run_where_the_lab_is(["list"])
    rows = [("id", "title", "kind", "difficulty", "seniority", "time box")]
    for m in _lab().scenarios():
        rows.append(
            (
                m.id,
                m.title,
                m.kind.value.replace("_", " "),
                m.difficulty.value,
                ", ".join(s.value for s in m.seniority),
                f"{m.time_box_minutes} min",
            )
        )
    _print_columns(rows)
    typer.echo("\nbreak one with `make break S=<id>` (SEED=<n> picks the variant)")


@lab_app.command("break")
@_reports_errors
def break_(
    scenario: Annotated[str, typer.Argument(help="Scenario id from `fraudlab lab list`.")],
    seed: Annotated[
        int | None, typer.Option(help="Picks the variant; a random one when omitted.")
    ] = None,
) -> None:
    """Check the baseline, inject the scenario, print the candidate's ticket — nothing else."""
    _run_where_the_lab_is(
        ["break", scenario, *(["--seed", str(seed)] if seed is not None else [])], stack=True
    )
    typer.echo(_lab().break_(scenario, seed), nl=False)


@lab_app.command()
@_reports_errors
def verify(
    explain: Annotated[
        bool, typer.Option(help="Interviewer: also print each check's detail (passphrase).")
    ] = False,
) -> None:
    """OK/NO per check of the active scenario; exit 0 only when every check passes."""
    _run_where_the_lab_is(["verify", *(["--explain"] if explain else [])])
    lab = _lab()
    if explain:
        lab.require_interviewer()
    checks = lab.verify()
    raise typer.Exit(_print_checks(checks, explain))


def _print_columns(rows: list[Any]) -> None:
    """Plain aligned columns rather than a rich table: titles never wrap mid-word, grep works."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def _print_checks(checks: list[Any], explain: bool = False) -> int:
    """OK/NO per check and the count; the exit code (0 only when every check passes)."""
    for check in checks:
        typer.echo(f"{'OK' if check.ok else 'NO'}  {check.description}")
        if explain and check.detail:
            typer.echo("    " + check.detail.strip().replace("\n", "\n    "))
    from lab.context import summarise_levels

    passed = sum(c.ok for c in checks)
    typer.echo(f"{passed} of {len(checks)} checks pass")
    summary = summarise_levels(checks)
    if summary is not None:  # the scenario grades its checks by level
        typer.echo(summary.describe())
    return 0 if passed == len(checks) else 1


@lab_app.command()
@_reports_errors
def hint() -> None:
    """Give the next hint of the ladder (vague first); the lab remembers how many were given."""
    _run_where_the_lab_is(["hint"])
    given = _lab().hint()
    if given.text is None:
        typer.echo(f"no hints left ({given.total} given): `make reveal` shows the answer")
        return
    typer.echo(f"hint {given.number} of {given.total}: {given.text}")


@lab_app.command()
@_reports_errors
def reveal() -> None:
    """Interviewer: cause, diagnosis path, hints, reference fix, rubric, follow-up questions."""
    _run_where_the_lab_is(["reveal"])
    typer.echo(_lab().reveal(), nl=False)


@lab_app.command()
@_reports_errors
def reset() -> None:
    """Return to the verified healthy baseline from any state (harmless when nothing is active)."""
    _run_where_the_lab_is(["reset"], stack=True)
    typer.echo(_lab().reset())


@lab_app.command()
@_reports_errors
def seal() -> None:
    """Encrypt the catalogue's interviewer material and the state with a passphrase."""
    _run_where_the_lab_is(["seal"])
    lab = _lab()
    if lab.store.sealed():
        typer.echo("✗ the lab is already sealed", err=True)
        raise typer.Exit(2)
    typer.echo(lab.seal(_passphrase(confirm=True)))
    typer.echo(
        "hand-over notes: `git log -p`, old objects and shell history are not sealed; "
        "see broken_scenarios/AUTHORING.md"
    )


@lab_app.command()
@_reports_errors
def unseal() -> None:
    """Decrypt what `seal` encrypted."""
    _run_where_the_lab_is(["unseal"])
    typer.echo(_lab().unseal(_passphrase()))


@lab_app.command()
@_reports_errors
def status() -> None:
    """Say whether a scenario is active, never which: the line `make status` shows."""
    _run_where_the_lab_is(["status"])
    line = _lab().status_line()
    if line:
        typer.echo(line)


@lab_app.command()
@_reports_errors
def scorecard(
    session: Annotated[
        str | None,
        typer.Option(help="Session id (`--list`); default: the active session, else the last."),
    ] = None,
    list_sessions: Annotated[
        bool, typer.Option("--list", help="List the recorded sessions instead.")
    ] = False,
    mark: Annotated[
        list[str] | None,
        typer.Option(
            help="A mark, DIMENSION=LEVEL: a rubric row (detection, localisation, root cause, "
            "mitigation; a prefix will do) or 'overall', and junior, mid or senior. Repeatable."
        ),
    ] = None,
    note: Annotated[str | None, typer.Option(help="A note for the scorecard.")] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Where to write it (default: <lab dir>/scorecards/)."),
    ] = None,
    ask: Annotated[
        bool | None,
        typer.Option(
            "--ask/--no-ask",
            help="Ask for a mark per rubric row (default: at a terminal, when no --mark/--note).",
        ),
    ] = None,
) -> None:
    """Interviewer: one page per session — timeline, time to first correct check, hints,
    verifies, level reached, the rubric with your marks, follow-ups — as markdown and HTML."""
    _run_where_the_lab_is(
        [
            "scorecard",
            *(["--session", session] if session else []),
            *(["--list"] if list_sessions else []),
            *[f"--mark={m}" for m in mark or []],
            *([f"--note={note}"] if note else []),
            *([f"--out={out}"] if out else []),
            *(["--ask" if ask else "--no-ask"] if ask is not None else []),
        ]
    )
    import sys

    from lab import scorecard as card
    from lab.engine import LabError
    from lab.record import Event, EventKind

    lab = _lab()
    if list_sessions:
        rows = [card.SESSION_COLUMNS]
        try:
            rows.append(card.session_line(lab.session()))
        except LabError:
            pass
        for past in reversed(lab.sessions()):
            if past.id != rows[-1][0]:
                rows.append(card.session_line(past))
        if len(rows) == 1:
            typer.echo("no session recorded yet")
            return
        _print_columns(rows)
        return
    chosen = lab.session(session)
    rubric = card.Rubric.parse(chosen.rubric)
    try:
        events = card.parse_marks(mark or [], rubric)
    except card.MarkError as exc:
        raise LabError(str(exc), 2) from None
    if ask is None:
        ask = sys.stdin.isatty() and not mark and not note
    if ask:
        current, _ = card.marks_of(chosen)
        for dimension in [*rubric.dimensions, card.OVERALL]:
            answer = typer.prompt(
                f"{dimension} (junior/mid/senior, Enter: "
                f"{current.get(dimension, 'leave unmarked')})",
                default="",
                show_default=False,
                err=True,
            ).strip()
            if answer:
                try:
                    events += card.parse_marks([f"{dimension}={answer}"], rubric)
                except card.MarkError as exc:
                    typer.echo(f"  ✗ {exc}; left as it was", err=True)
        note = typer.prompt("note (Enter: none)", default="", show_default=False, err=True)
    if note:
        events.append(Event(kind=EventKind.NOTE, text=note))
    if not chosen.finished and lab.store.sealed() and out is None:
        raise LabError(
            "the session is still active on a sealed machine: a scorecard in the lab directory "
            "is plain text the candidate can read. Run it after `make reset`, or give --out a "
            "directory outside their reach"
        )
    if events:
        chosen = lab.record_marks(chosen, events)
    markdown, page = card.write(chosen, out or lab.store.root / "scorecards")
    facts = card.Facts.of(chosen)
    first = facts.since_ticket(facts.first_correct.at) if facts.first_correct else "not reached"
    typer.echo(
        f"session {chosen.id}: first correct check {first}, {len(facts.verifies)} verify "
        f"run(s), {len(facts.hints)} hint(s), level {facts.highest_level or '-'}"
    )
    typer.echo(f"wrote {markdown}\nwrote {page}")


# --- lab mode ----------------------------------------------------------------------------------

learn_app = typer.Typer(
    help="Lab mode: a self-serve curriculum with progress per learner (no passphrase).",
    no_args_is_help=True,
)
lab_app.add_typer(learn_app, name="learn")

Learner = Annotated[
    str | None,
    typer.Option(
        "--learner", help="Whose progress this counts for (default: the user running it)."
    ),
]


def _learning(learner: str | None):
    from lab.learning import Learning

    return Learning(_lab(), learner)


def _forward(args: list[str], learner: str | None, stack: bool = False) -> str:
    """The learner, resolved here (on the host the runner's user is not the learner), and the
    verb handed to the lab runner when the stack is containerised."""
    from lab.learning import default_learner

    learner = learner or default_learner()
    _run_where_the_lab_is(["learn", *args, "--learner", learner], stack=stack)
    return learner


@learn_app.command("list")
@_reports_errors
def learn_list(learner: Learner = None) -> None:
    """The curriculum: families in teaching order, easy first, with your state in each."""
    from lab.learning import Status, format_duration

    learner = _forward(["list"], learner)
    learning = _learning(learner)
    lessons = learning.curriculum()
    entries = [lesson.progress for lesson in lessons if lesson.progress]
    solved = sum(lesson.status == Status.SOLVED for lesson in lessons)
    doing = sum(lesson.status == Status.IN_PROGRESS for lesson in lessons)
    typer.echo(
        f"lab mode for {learner}: {solved} of {len(lessons)} solved, {doing} in progress, "
        f"{format_duration(sum(e.time_spent() for e in entries))} spent, "
        f"{sum(e.hints_used for e in entries)} hint(s) used\n"
    )
    rows = [("family", "id", "title", "difficulty", "time box", "state", "time", "hints")]
    for lesson in lessons:
        entry = lesson.progress
        rows.append(
            (
                lesson.family,
                lesson.manifest.id,
                lesson.manifest.title,
                lesson.manifest.difficulty.value,
                f"{lesson.manifest.time_box_minutes} min",
                lesson.status.value + (" (now)" if lesson.active else ""),
                format_duration(entry.time_spent()) if entry else "-",
                str(entry.hints_used) if entry else "-",
            )
        )
    _print_columns(rows)
    active = next((lesson for lesson in lessons if lesson.active), None)
    if active is not None:
        typer.echo(f"\nworking on {active.manifest.id}: `make lab-check`, `make lab-hint`")
        return
    from lab.engine import LabError

    try:
        upcoming = learning.next_lesson().manifest
    except LabError:  # everything solved or given up
        typer.echo("\nevery scenario done: `make lab-start S=<id>` repeats one")
        return
    typer.echo(f"\nnext: `make lab-start` starts {upcoming.id} ({upcoming.title})")


@learn_app.command("start")
@_reports_errors
def learn_start(
    scenario: Annotated[
        str | None, typer.Argument(help="Scenario id; the next of the curriculum when omitted.")
    ] = None,
    learner: Learner = None,
    seed: Annotated[
        int | None, typer.Option(help="Picks the variant; a random one when omitted.")
    ] = None,
) -> None:
    """Break a scenario for yourself and print its ticket."""
    args = ["start", *([scenario] if scenario else [])]
    learner = _forward(args + (["--seed", str(seed)] if seed is not None else []), learner, True)
    manifest, ticket = _learning(learner).start(scenario, seed)
    typer.echo(
        f"lab mode, {learner}: {manifest.id} {manifest.title} ({manifest.difficulty.value}, "
        f"time box {manifest.time_box_minutes} min)\n"
    )
    typer.echo(ticket, nl=False)
    typer.echo(
        "\nnext: investigate with the stack's tools; `make lab-check` when you think it is "
        "fixed, `make lab-hint` for a hint, `make lab-giveup` for the answer, `make lab-reset` "
        "to leave it"
    )


@learn_app.command("hint")
@_reports_errors
def learn_hint(learner: Learner = None) -> None:
    """The next hint of your scenario, vague first."""
    given = _learning(_forward(["hint"], learner)).hint()
    if given.text is None:
        typer.echo(f"no hints left ({given.total} given): `make lab-giveup` shows the answer")
        return
    typer.echo(f"hint {given.number} of {given.total}: {given.text}")


@learn_app.command("check")
@_reports_errors
def learn_check(learner: Learner = None) -> None:
    """OK/NO per check of your scenario; exit 0 only when every check passes."""
    from lab.learning import format_duration

    checked = _learning(_forward(["check"], learner)).check()
    code = _print_checks(checked.checks)
    if checked.newly_solved:
        entry = checked.progress
        typer.echo(
            f"solved in {format_duration(entry.seconds_to_solve)} with "
            f"{entry.hints_to_solve} hint(s): `make lab-reset`, then `make lab-start` for the "
            "next one"
        )
    raise typer.Exit(code)


@learn_app.command("giveup")
@_reports_errors
def learn_giveup(
    learner: Learner = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Show the answer (cause, fix, rubric) after a confirmation; it counts as given up."""
    if not yes:
        typer.confirm(
            "show the answer? Unless you solved it already, it counts as given up",
            abort=True,
            err=True,
        )
    typer.echo(_learning(_forward(["giveup", "--yes"], learner)).give_up(), nl=False)


@learn_app.command("reset")
@_reports_errors
def learn_reset(learner: Learner = None) -> None:
    """Undo your scenario and return to the healthy baseline; your progress stays."""
    typer.echo(_learning(_forward(["reset"], learner, stack=True)).reset())
    typer.echo("next: `make lab` shows your progress, `make lab-start` the next scenario")


@learn_app.command("report")
@_reports_errors
def learn_report(learner: Learner = None) -> None:
    """Write your progress as a markdown and an HTML page a manager can read."""
    markdown, page = _learning(_forward(["report"], learner)).report()
    typer.echo(f"wrote {markdown}\nwrote {page}")
