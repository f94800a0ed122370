"""The ``fraudlab`` command line: one entry point over every stage and the stack.

Owns: argument parsing and human-facing output. Each command calls one function in the
package that owns the work; no logic lives here. The Makefile calls these commands.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from foundation.settings import get_settings
from lab.cli import lab_app, record_command

app = typer.Typer(
    help="fraudlab: a production fraud-detection stack and interview sandbox.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(lab_app, name="lab")


@app.callback()
def _record(context: typer.Context) -> None:
    # While a scenario is active, the interview record notes the command's name (never its
    # arguments) and time; the candidate's ticket says so.
    record_command(context.command, sys.argv[1:])


def _compose_host() -> bool:
    """Drive the containerised stack through the compose CLI: on the host only. Inside its
    containers (``FRAUDLAB_IN_CONTAINER``) every command acts on the services directly."""
    settings = get_settings()
    return settings.stack == "compose" and not settings.in_container


@app.command()
def data(
    force: Annotated[
        bool, typer.Option(help="Regenerate even if data for this seed exists.")
    ] = False,
) -> None:
    """Generate the synthetic world and build the offline feature tables."""
    from pipelines import tasks

    tasks.prepare_data(get_settings(), force=force)


@app.command()
def features() -> None:
    """Apply the Feast definitions and materialise the online store up to the stack's clock."""
    from pipelines import tasks

    tasks.prepare_features(get_settings())


@app.command()
def train(
    promote: Annotated[
        bool, typer.Option(help="Point the 'champion' alias at the new version.")
    ] = True,
) -> None:
    """Train, evaluate and register a model (LightGBM → calibrated → ONNX → MLflow)."""
    from pipelines import tasks

    tasks.train_and_register(get_settings(), promote=promote)


@app.command()
def up(
    traffic: Annotated[bool, typer.Option(help="Start the traffic simulator too.")] = True,
    airflow: Annotated[
        bool,
        typer.Option(help="Start Airflow's UI and scheduler too (~0.7 GB; `make airflow-ui`)."),
    ] = False,
) -> None:
    """Start the stack (idempotent) and print its status; STACK=compose: docker-compose.yml."""
    if _compose_host():
        from control import compose

        raise typer.Exit(compose.up(get_settings(), traffic=traffic))
    from control import stack

    raise typer.Exit(stack.up(get_settings(), traffic=traffic, airflow=airflow))


@app.command()
def deploy(
    show_diff: Annotated[
        bool,
        typer.Option(
            "--diff", help="Only show how the release serving runs differs from the working tree."
        ),
    ] = False,
) -> None:
    """Ship the working tree's code to serving (a new release, switched to without dropping a
    request), or show what serving runs and which commit it matches."""
    from control import releases, stack

    settings = get_settings()
    if _compose_host():  # the image's code, shipped from the workstation container
        from control import compose

        command = ["fraudlab", "deploy", *(["--diff"] if show_diff else [])]
        raise typer.Exit(compose.Compose(settings).exec("workstation", command).returncode)
    if not show_diff:
        raise typer.Exit(stack.deploy(settings))
    release = releases.current(settings)
    if release is None:
        typer.echo("nothing deployed yet: `fraudlab up` deploys the working tree")
        raise typer.Exit(2)
    text = releases.diff(release)
    typer.echo(f"serving runs {release.provenance()}")
    typer.echo(text or "the working tree has the same code")


config_app = typer.Typer(
    help="The stack's live configuration overrides (<home>/overrides.env).",
    no_args_is_help=False,
    invoke_without_command=True,
)
app.add_typer(config_app, name="config")


@config_app.callback()
def config_show(
    ctx: typer.Context,
    show_all: Annotated[
        bool, typer.Option("--all", help="Every setting, not only the changed ones.")
    ] = False,
) -> None:
    """Show the effective settings that differ from the defaults, and where each comes from."""
    if ctx.invoked_subcommand is not None:
        return
    from control import config

    settings = get_settings()
    rows = [r for r in config.effective(settings) if show_all or r.source != "default"]
    for row in rows:
        typer.echo(f"{row.name:<32} {row.value!s:<24} ({row.source})")
    if not rows:
        typer.echo("every setting has its default value (`fraudlab config --all` lists them)")
    if settings.overridden:
        typer.echo(f"\noverrides file: {config.overrides_path(settings)}")


@config_app.command("set")
def config_set(
    assignments: Annotated[
        list[str], typer.Argument(help="NAME=VALUE pairs, e.g. psi_alert=0.25")
    ],
) -> None:
    """Override settings for this stack (validated; read by processes as they start)."""
    from control import config

    try:
        path = config.set_overrides(get_settings(), config.parse_assignments(assignments))
    except config.ConfigError as exc:
        typer.echo(f"✗ {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"written to {path}: {config.STARTUP_ONLY_HINT}")


@config_app.command("unset")
def config_unset(
    names: Annotated[list[str], typer.Argument(help="Settings to return to their usual value.")],
) -> None:
    """Remove overrides."""
    from control import config

    try:
        removed = config.unset_overrides(get_settings(), names)
    except config.ConfigError as exc:
        typer.echo(f"✗ {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"removed: {', '.join(removed) or 'nothing (none of them was overridden)'}")
    if removed:
        typer.echo(config.STARTUP_ONLY_HINT)


schedule_app = typer.Typer(
    help="The stack's scheduled jobs (the nightly materialisation) and whether each is paused.",
    no_args_is_help=False,
    invoke_without_command=True,
)
app.add_typer(schedule_app, name="schedule")


def _compose_schedule(args: list[str]) -> None:
    """Containerised: the schedules live in the home volume the traffic container runs on."""
    from control import compose

    raise typer.Exit(
        compose.Compose(get_settings()).exec("traffic", ["fraudlab", "schedule", *args]).returncode
    )


@schedule_app.callback()
def schedule_list(ctx: typer.Context) -> None:
    """List the scheduled jobs: active or paused (since when), when each runs, who runs it."""
    if ctx.invoked_subcommand is not None:
        return
    if _compose_host():
        _compose_schedule([])
    from pipelines import schedules

    for line in schedules.describe(get_settings()):
        typer.echo(line)


@schedule_app.command("pause")
def schedule_pause(
    name: Annotated[str, typer.Argument(help="A job `fraudlab schedule` lists.")],
) -> None:
    """Pause a job: its runs are skipped until it is resumed (runs by hand still work)."""
    if _compose_host():
        _compose_schedule(["pause", name])
    from pipelines import schedules

    try:
        changed = schedules.pause(get_settings(), name)
    except schedules.ScheduleError as exc:
        typer.echo(f"✗ {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{name}: {'paused' if changed else 'was already paused'}")


@schedule_app.command("resume")
def schedule_resume(
    name: Annotated[str, typer.Argument(help="A job `fraudlab schedule` lists.")],
) -> None:
    """Resume a paused job: it runs again at its next scheduled time (not now)."""
    if _compose_host():
        _compose_schedule(["resume", name])
    from pipelines import schedules

    try:
        changed = schedules.resume(get_settings(), name)
    except schedules.ScheduleError as exc:
        typer.echo(f"✗ {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{name}: {'resumed' if changed else 'was not paused'}")


@app.command()
def restart(
    component: Annotated[str, typer.Argument(help="serving, traffic or evidently.")],
) -> None:
    """Restart one component with the settings as they are now (overrides included)."""
    from control import stack

    if _compose_host():
        from control import compose

        service = {"evidently": "monitoring"}.get(component, component)
        compose.Compose(get_settings()).restart(service)
        raise typer.Exit(0)

    raise typer.Exit(stack.restart(get_settings(), component))


@app.command()
def down(
    volumes: Annotated[
        bool, typer.Option(help="Containerised stack: delete its volumes too (all its data).")
    ] = False,
) -> None:
    """Stop every process the stack started (and nothing else)."""
    if _compose_host():
        from control import compose

        raise typer.Exit(compose.down(get_settings(), volumes=volumes))
    from control import stack

    raise typer.Exit(stack.down(get_settings()))


@app.command()
def status() -> None:
    """Show each component, its URL and its health."""
    if _compose_host():
        from control import compose

        raise typer.Exit(compose.status(get_settings()))
    from lab.engine import Lab

    settings = get_settings()
    if settings.stack == "compose":  # inside one of its containers: no process of ours to find
        from control import services

        code = services.status(settings)
    else:
        from control import stack

        code = stack.status(settings)
    lab = Lab(settings).status_line()  # at most "a scenario is active": never which one
    if lab:
        typer.echo(lab)
    raise typer.Exit(code)


@app.command()
def logs(
    component: Annotated[
        str | None,
        typer.Argument(
            help="A component `fraudlab status` lists (compose: a service; default: all)."
        ),
    ] = None,
    lines: Annotated[int, typer.Option("--lines", "-n", help="Lines per log.")] = 40,
) -> None:
    """Show the tail of the stack's logs."""
    if _compose_host():
        from control import compose

        raise typer.Exit(compose.logs(get_settings(), component, lines))
    from control import stack

    raise typer.Exit(stack.logs(get_settings(), component, lines))


@app.command()
def simulate(
    rps: Annotated[
        float | None, typer.Option(help="Requests per second (default: settings).")
    ] = None,
    max_requests: Annotated[
        int | None, typer.Option(help="Stop after this many requests (default: run on).")
    ] = None,
    fast_forward_hours: Annotated[
        float | None,
        typer.Option(
            help="Replay this many hours of simulated time as fast as serving answers, then"
            " stop (stop the paced simulator first: `fraudlab down` stops all, or run it"
            " with the stack started `--no-traffic`)."
        ),
    ] = None,
    workers: Annotated[int, typer.Option(help="Concurrent clients when fast-forwarding.")] = 4,
) -> None:
    """Replay future transactions against serving and deliver chargebacks as they arrive."""
    from traffic import simulator

    settings = get_settings()
    raise typer.Exit(
        simulator.run(
            settings,
            rps=rps or settings.traffic_rps,
            max_requests=max_requests,
            fast_forward_hours=fast_forward_hours,
            workers=workers,
        )
    )


@app.command()
def loadtest(
    rps: Annotated[float | None, typer.Option(help="Target request rate.")] = None,
    seconds: Annotated[int | None, typer.Option(help="Duration in seconds.")] = None,
) -> None:
    """Run Locust headless against serving at a fixed rate and report latency vs the budget."""
    if _compose_host():
        from control import compose

        raise typer.Exit(compose.loadtest(get_settings(), rps, seconds))
    from traffic import loadtest as lt

    settings = get_settings()
    raise typer.Exit(
        lt.run(
            settings,
            rps=rps or settings.loadtest_rps,
            seconds=seconds or settings.loadtest_seconds,
        )
    )


@app.command()
def bench(
    seconds: Annotated[float, typer.Option(help="Seconds per load measurement.")] = 20.0,
    rps: Annotated[float, typer.Option(help="Standard load for the latency budget.")] = 50.0,
) -> None:
    """Measure every performance target side by side (needs the stack up)."""
    from bench import run as bench_run

    raise typer.Exit(bench_run.run(get_settings(), seconds=seconds, rps=rps))


@app.command()
def monitor(
    check: Annotated[
        str,
        typer.Argument(
            help="Which monitor: all, drift (PSI), skew (served vs offline), performance"
            " (matured chargebacks), decisions (decline, fallback and fraud rates, the"
            " threshold's cost), freshness (online features), latency (p99 vs budget) or"
            " quality (logged requests vs their data-quality suite)."
        ),
    ] = "all",
) -> None:
    """Judge the stack: drift, skew, live performance, decisions, freshness, latency, quality.

    Findings (warn, alert) are printed, not raised: the exit code is 1 only when a monitor
    could not run. Reports land in <home>/monitoring/<UTC timestamp>/.
    """
    if _compose_host():
        from control import compose

        raise typer.Exit(compose.monitor(get_settings(), check))
    from monitoring.run import Monitor, run_monitors

    try:
        which = Monitor(check)
    except ValueError:
        choices = ", ".join(m.value for m in Monitor)
        raise typer.BadParameter(f"'{check}': choose one of {choices}") from None
    raise typer.Exit(run_monitors(get_settings(), which))


@app.command()
def promote() -> None:
    """Gate the challenger against the champion on the same fresh holdout; promote on PASS.

    Prints the gate report (also written to <home>/gates/<UTC timestamp>/ and logged to the
    challenger's MLflow run). Exit 0: promoted; 1: a gate failed; 2: no challenger/champion.
    """
    from pipelines import tasks

    code, report = tasks.promote_challenger(get_settings())
    typer.echo(report)
    raise typer.Exit(code)


@app.command()
def rollback() -> None:
    """Move the champion back to the version it replaced (alias 'previous_champion')."""
    from pipelines import tasks

    code, message = tasks.rollback_champion(get_settings())
    typer.echo(message, err=code != 0)
    raise typer.Exit(code)


def _run_dag(dag_id: str) -> None:
    # Containerised: the stack's own scheduler runs it, triggered through the REST API.
    if _compose_host():
        from control import compose

        raise typer.Exit(compose.run_dag(get_settings(), dag_id))
    from control.airflow import run_dag

    raise typer.Exit(run_dag(get_settings(), dag_id))


@app.command()
def materialize() -> None:
    """Run the DAG fraudlab_materialize once (`airflow dags test`, isolated Airflow home)."""
    _run_dag("fraudlab_materialize")


@app.command()
def retrain() -> None:
    """Run the DAG fraudlab_retrain once: validate, build the training set, train, evaluate,
    gates, register, promote, reload serving (one task per stage, sharing a run directory
    under <home>/training). A failed data check or gate stops it; the champion stays.

    Needs MLflow up (`make up`). Airflow's home is <home>/airflow (SQLite, created on first use).
    """
    _run_dag("fraudlab_retrain")


@app.command(name="monitor-dag")
def monitor_dag() -> None:
    """Run the DAG fraudlab_monitor once: every monitor; a drift alert triggers a retrain.

    With no scheduler, the retrain it triggered is run next (`airflow dags test`, with the
    trigger's conf) and its outcome printed; the exit code is the first failure of either.
    """
    _run_dag("fraudlab_monitor")


@app.command()
def images() -> None:
    """Build the containerised stack's images (a local Debian base when no registry answers)."""
    from control import compose

    raise typer.Exit(compose.images(get_settings()))


@app.command(name="env")
def env_file() -> None:
    """Write the containerised stack's credentials into .env (only those missing)."""
    from control import compose

    added = compose.ensure_env(get_settings().compose_env_file)
    typer.echo(f"added to .env: {', '.join(added)}" if added else ".env has every variable")


@app.command()
def bootstrap() -> None:
    """Data, features and a champion model, each skipped when already there.

    The containerised stack's one-shot bootstrap job; `up` does the same before serving starts.
    """
    from control import stack

    raise typer.Exit(0 if stack.bootstrap(get_settings()) else 1)


@app.command()
def serve() -> None:
    """Serving's supervisor (what `fraudlab up` and the serving container run): hold serving's
    port, run BentoML on the deployed release, switch when `fraudlab deploy` moves the release
    pointer without dropping a request."""
    from control import serve as supervisor

    raise typer.Exit(supervisor.run(get_settings()))


@app.command(name="candidate-repo")
def candidate_repo() -> None:
    """Containerised workstation: make the candidate's git checkout of this code (once)."""
    from control import checkout

    settings = get_settings()
    made = checkout.ensure(settings)
    where = settings.lab_repo
    typer.echo(f"created the checkout {where}" if made else f"checkout {where} is there")


@app.command(name="airflow-init")
def airflow_init() -> None:
    """Migrate Airflow's metadata DB and write its admin password (containerised init job)."""
    from control import compose

    raise typer.Exit(compose.airflow_init())


if __name__ == "__main__":
    app()
