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

Must not: contain engine logic (``lab.engine``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Annotated, Any

import typer

from foundation.settings import get_settings

lab_app = typer.Typer(
    help="Interview scenarios: list, break, verify, hint, reveal, reset, seal, unseal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

PASSPHRASE_VARIABLE = "FRAUDLAB_LAB_PASSPHRASE"


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
    # Plain columns rather than a rich table: titles never wrap mid-word, and grep works.
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
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
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
    for check in checks:
        typer.echo(f"{'OK' if check.ok else 'NO'}  {check.description}")
        if explain and check.detail:
            typer.echo("    " + check.detail.strip().replace("\n", "\n    "))
    passed = sum(c.ok for c in checks)
    typer.echo(f"{passed} of {len(checks)} checks pass")
    raise typer.Exit(0 if passed == len(checks) else 1)


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
