"""The embedded stack's process manager: start, stop, inspect and tail the local services.

Owns: the life cycle of the processes ``fraudlab up`` starts (MLflow tracking server, the
Evidently UI over the monitoring workspace, BentoML serving, the traffic simulator and, with
``--airflow``, Airflow's API server, scheduler, triggerer and DAG processor), their pid files
under ``<home>/run`` and their logs under ``<home>/logs``, and the bootstrap order
(data → features → model → serving → traffic).

Must not: kill anything it did not start. Every pid file records the process's start time
(``/proc/<pid>/stat`` field 22) next to its pid; a process whose start time differs is a
recycled pid and is left alone. Must not: contain pipeline logic (that lives in
``pipelines.tasks`` and the packages it wires) or shell scripting.

When ``FRAUDLAB_MLFLOW_TRACKING_URI``, ``FRAUDLAB_SERVING_URL`` or ``FRAUDLAB_EVIDENTLY_URL``
point elsewhere (the containerised stack), that component is treated as external: checked,
never started.

Airflow runs in the isolated home of ``control.airflow`` (SQLite, parallelism 4), every part
bound to loopback: the API server on ``bind_host``, the scheduler and triggerer without their
log servers (those bind 0.0.0.0; the API server reads task logs from the shared home instead).
It is not started by default: its four processes take ~0.7 GB (PSS) and ~20 s.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from control import releases, serve
from control.launch import (
    child_environment,
    http_get,
    mlflow_healthy,
    serving_ready,
    supervisor_command,
    tool,
)
from foundation.settings import REPO_ROOT, Settings
from traffic import progress

console = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

# Started in this order, stopped in reverse: Airflow first (its tasks call MLflow and serving),
# its API server last of the four (running tasks report their end through it); then traffic, so
# it never hammers a dying server.
AIRFLOW_COMPONENTS = (
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-triggerer",
    "airflow-dag-processor",
)
COMPONENTS = ("mlflow", "evidently", "serving", "traffic", *AIRFLOW_COMPONENTS)
STOP_GRACE_S = 15.0
MLFLOW_TIMEOUT_S = 120.0
EVIDENTLY_TIMEOUT_S = 120.0  # ~5 s alone; 25 s seen while the machine was busy
SERVING_TIMEOUT_S = 180.0
AIRFLOW_TIMEOUT_S = 180.0
# Where the simple auth manager writes the generated admin password (Airflow's default).
AIRFLOW_PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"
# Which entry of the API server's /api/v2/monitor/health reports each process's heartbeat.
AIRFLOW_HEARTBEATS = {
    "airflow-scheduler": "scheduler",
    "airflow-triggerer": "triggerer",
    "airflow-dag-processor": "dag_processor",
}
TRAFFIC_SETTLE_S = 3.0
TRAFFIC_RECOVERY_S = 30.0  # > the simulator's longest retry back-off
PROGRESS_EVERY_S = 5.0
# The exact label: "transform_version" must not match.
MODEL_VERSION_LABEL = re.compile(r'[{,]version="([^"]*)"')


# --- process identity ------------------------------------------------------------------------


def _start_time(pid: int) -> int | None:
    """Kernel start time of ``pid`` in clock ticks since boot, or None when it does not exist.

    The command name in /proc/<pid>/stat may contain spaces and parentheses, so split after the
    last ')'; start time is field 22 overall, i.e. index 19 of what follows.
    """
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[19])


def _pgid_of(pid: int) -> int | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie holds no resources; treat it as gone
        return None
    return int(fields[2])


@dataclass(frozen=True)
class Started:
    """What a pid file records about a process we started."""

    component: str
    pid: int
    start_time: int
    command: list[str]
    started_at: float
    url: str  # where it serves (traffic: where it sends), to spot mismatched settings later

    def processes(self) -> dict[int, int]:
        """Live processes of this component, as {pid: start time}: our group and descendants.

        The group covers children that outlive a leader that died first (their group id cannot
        be reused while they exist). Descendants cover workers that leave the group: BentoML's
        circus supervisor starts each worker in a session of its own. Anything started before
        the leader is excluded, so a recycled pid never matches.
        """
        stats: dict[int, tuple[int, int, int]] = {}  # pid -> (ppid, pgid, start time)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                raw = (entry / "stat").read_text()
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
            fields = raw[raw.rindex(")") + 2 :].split()
            if fields[0] == "Z":  # zombies hold nothing and cannot be signalled away
                continue
            stats[int(entry.name)] = (int(fields[1]), int(fields[2]), int(fields[19]))
        found = {
            pid: start
            for pid, (_, pgid, start) in stats.items()
            if pgid == self.pid and start >= self.start_time
        }
        frontier = list(found)
        while frontier:
            parent = frontier.pop()
            for pid, (ppid, _, start) in stats.items():
                if ppid == parent and pid not in found and start >= self.start_time:
                    found[pid] = start
                    frontier.append(pid)
        return found

    def leader_alive(self) -> bool:
        return _start_time(self.pid) == self.start_time and _pgid_of(self.pid) == self.pid

    def alive(self) -> bool:
        return self.leader_alive() or bool(self.processes())


def _pid_file(settings: Settings, component: str) -> Path:
    return settings.run_dir / f"{component}.pid"


def log_file(settings: Settings, component: str) -> Path:
    return settings.log_dir / f"{component}.log"


def _read_pid_file(settings: Settings, component: str) -> Started | None:
    path = _pid_file(settings, component)
    try:
        record = json.loads(path.read_text())
        return Started(
            component=component,
            pid=int(record["pid"]),
            start_time=int(record["start_time"]),
            command=list(record["command"]),
            started_at=float(record["started_at"]),
            url=str(record.get("url", "")),
        )
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        # A pid file we cannot read identifies nothing; never act on it.
        console.print(f"[yellow]![/] ignoring unreadable pid file {path}")
        return None


def running(settings: Settings, component: str) -> Started | None:
    """The live process we started for ``component``; clears a stale pid file."""
    record = _read_pid_file(settings, component)
    if record is None:
        return None
    if record.alive():
        return record
    _pid_file(settings, component).unlink(missing_ok=True)
    return None


def _spawn(
    settings: Settings,
    component: str,
    command: list[str],
    url: str,
    extra_env: dict[str, str] | None = None,
    cwd: Path = REPO_ROOT,
) -> Started:
    """Start ``command`` detached in its own session, logging to ``<log_dir>/<component>.log``."""
    log_path = log_file(settings, component)
    env = child_environment(settings)
    env.update(extra_env or {})
    with log_path.open("ab") as log:
        log.write(
            f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(command)}\n".encode()
        )
        log.flush()
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    start_time = _start_time(proc.pid)
    if start_time is None:
        raise RuntimeError(
            f"{component} exited immediately; read {log_path} (`fraudlab logs {component}`)"
        )
    record = Started(component, proc.pid, start_time, command, time.time(), url)
    path = _pid_file(settings, component)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps(
            {
                "pid": record.pid,
                "start_time": record.start_time,
                "command": command,
                "started_at": record.started_at,
                "url": url,
            }
        )
    )
    tmp.replace(path)
    return record


# --- health -----------------------------------------------------------------------------------


def evidently_healthy(settings: Settings) -> bool:
    """The Evidently UI answers /api/version (and it is Evidently answering)."""
    response = http_get(f"{settings.evidently_base_url}/api/version")
    if response is None or response.status_code != 200:
        return False
    try:
        return response.json().get("application") == "Evidently UI"
    except ValueError:
        return False


def airflow_health(settings: Settings, base_url: str | None = None) -> dict | None:
    """The API server's view of Airflow (metadata DB, heartbeats); None when it does not answer.

    A heartbeat older than Airflow's threshold (30 s) reads "unhealthy". ``base_url``: the API
    server's (default: ours, ``settings.airflow_base_url``).
    """
    response = http_get(f"{base_url or settings.airflow_base_url}/api/v2/monitor/health")
    if response is None or response.status_code != 200:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def airflow_healthy(settings: Settings, component: str, health: dict | None = None) -> bool:
    """The API server answers; for the others: our process runs and beats, fresh and since it
    started (a crashed scheduler's last heartbeat reads fresh for 30 s, and would vouch for a
    replacement that has not come up yet).
    """
    from datetime import datetime

    health = airflow_health(settings) if health is None else health
    if health is None:
        return False
    if component == "airflow-api-server":
        return health.get("metadatabase", {}).get("status") == "healthy"
    key = AIRFLOW_HEARTBEATS[component]
    entry = health.get(key) or {}
    record = running(settings, component)
    last = entry.get(f"latest_{key}_heartbeat")
    if entry.get("status") != "healthy" or record is None or not last:
        return False
    return datetime.fromisoformat(last).timestamp() >= record.started_at


def served_model_version(settings: Settings) -> str | None:
    """The model version serving reports in ``fraudlab_model_info`` (the series set to 1).

    /metrics is cheap and side-effect free, unlike a /score call that would land in the
    prediction log and the monitors.
    """
    response = http_get(f"{settings.serving_base_url}/metrics")
    if response is None or response.status_code != 200:
        return None
    for line in response.text.splitlines():
        if not line.startswith("fraudlab_model_info{"):
            continue
        labels, _, value = line.rpartition(" ")
        match = MODEL_VERSION_LABEL.search(labels)
        if match and float(value) == 1.0:
            return match.group(1)
    return None


def gate_note(settings: Settings, version: str | None) -> tuple[str, str | None]:
    """The served version's promotion-gate verdict for the status table (", gates passed"), and
    a warning for people when it did not pass (None when it did, or nothing is served)."""
    if version is None:
        return "", None
    from model import registry

    try:
        verdict, sentence = registry.gate_verdict_line(settings, version)
    except Exception:  # noqa: BLE001 - a status line must not fail on the registry
        return ", gates unknown (registry unreachable)", None
    if verdict == registry.PASSED:
        return ", gates passed", None
    return f", [yellow]{'gates failed' if verdict == registry.FAILED else verdict}[/]", sentence


def traffic_state(settings: Settings) -> dict | None:
    """The simulator's persisted progress (requests sent, errors, clock), if any."""
    return progress.read_state(settings)


def replay_finished(settings: Settings) -> bool:
    """True when the simulator has sent every generated transaction (nothing left to run)."""
    state = traffic_state(settings)
    if not state or not state.get("finished"):
        return False
    from pipelines.data import read_clock

    try:
        return read_clock(settings).isoformat() == state.get("clock")
    except FileNotFoundError:
        return False


def traffic_healthy(settings: Settings) -> bool:
    """Our simulator runs and sends (alive but stuck retrying is not healthy)."""
    if running(settings, "traffic") is None:
        return False
    return progress.judge(traffic_state(settings), time.time()).state == progress.SENDING


def _wait_until(
    name: str,
    healthy: Callable[[], bool],
    timeout_s: float,
    settings: Settings,
    record: Started | None,
) -> bool:
    """Poll ``healthy`` with progress lines; fail fast when our process died."""
    started = time.monotonic()
    last_report = started
    while True:
        if healthy():
            console.print(f"[green]✓[/] {name} healthy ({time.monotonic() - started:.1f}s)")
            return True
        elapsed = time.monotonic() - started
        if record is not None and not record.alive():
            console.print(
                f"[bold red]✗[/] {name} exited after {elapsed:.1f}s. Last lines of "
                f"{log_file(settings, name)}:"
            )
            _print_tail(log_file(settings, name), 15)
            console.print(
                f"  next: fix the error above, then `fraudlab up` "
                f"(full log: `fraudlab logs {name}`)"
            )
            return False
        if elapsed > timeout_s:
            console.print(
                f"[bold red]✗[/] {name} not healthy after {timeout_s:.0f}s; read "
                f"{log_file(settings, name)} (`fraudlab logs {name}`), then `fraudlab down` and "
                "`fraudlab up`"
            )
            return False
        if time.monotonic() - last_report >= PROGRESS_EVERY_S:
            console.print(f"  … waiting for {name} ({elapsed:.0f}s / {timeout_s:.0f}s)")
            last_report = time.monotonic()
        time.sleep(0.5)


# --- up ---------------------------------------------------------------------------------------


def _prepare_dirs(settings: Settings) -> None:
    from monitoring.sources import workspace_dir

    for directory in (
        settings.home.resolve(),
        settings.log_dir,
        settings.run_dir,
        settings.mlflow_dir / "artifacts",
        settings.data_dir,
        settings.label_dir,
        settings.prediction_log_dir,
        settings.serving_cache_dir,
        workspace_dir(settings),  # the Evidently UI watches it, so it must exist before any run
    ):
        directory.mkdir(parents=True, exist_ok=True)


def _port_bound(host: str, port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


@dataclass(frozen=True)
class Server:
    """A component with a health check that ``up`` starts unless it is external.

    ``port`` is None for a process that listens nowhere (Airflow's scheduler: its health is
    read from the API server at ``url``).
    """

    name: str
    url: str
    port: int | None
    port_variable: str
    external: bool
    healthy: Callable[[], bool]
    timeout_s: float
    command: list[str]
    extra_env: dict[str, str]
    cwd: Path = REPO_ROOT


def _ensure_servers(settings: Settings, servers: list[Server]) -> bool:
    """Start each server unless it already answers, then wait until each is healthy, in order.

    Every one is launched before the first is waited for, so they start side by side.
    """
    waits: list[tuple[Server, Started | None]] = []
    for server in servers:
        if server.external:
            console.print(f"  {server.name} is external ({server.url}); not starting it")
            waits.append((server, None))
            continue
        record = running(settings, server.name)
        if record is None and server.healthy():
            console.print(f"[green]✓[/] {server.name} already answering at {server.url}")
            continue
        if record is None:
            if server.port is not None and _port_bound(settings.bind_host, server.port):
                console.print(
                    f"[bold red]✗[/] port {server.port} is taken by a process fraudlab did not "
                    f"start; set {server.port_variable} to a free port, then `fraudlab up`"
                )
                return False
            record = _spawn(
                settings, server.name, server.command, server.url, server.extra_env, server.cwd
            )
            where = f"on {server.url}" if server.port is not None else f"(health: {server.url})"
            console.print(f"[bold cyan]→[/] started {server.name} (pid {record.pid}) {where}")
        waits.append((server, record))
    return all(
        _wait_until(server.name, server.healthy, server.timeout_s, settings, record)
        for server, record in waits
    )


def _ensure_server(settings: Settings, server: Server) -> bool:
    """Start ``server`` unless it already answers, then wait until it is healthy."""
    return _ensure_servers(settings, [server])


def _evidently_server(settings: Settings) -> Server:
    from monitoring.sources import workspace_dir

    command = [
        *tool("evidently"),
        "ui",
        "--workspace",
        str(workspace_dir(settings)),
        "--host",
        settings.bind_host,
        "--port",
        str(settings.evidently_port),
    ]
    return Server(
        name="evidently",
        url=settings.evidently_base_url,
        port=settings.evidently_port,
        port_variable="FRAUDLAB_EVIDENTLY_PORT",
        external=bool(settings.evidently_url),
        healthy=lambda: evidently_healthy(settings),
        timeout_s=EVIDENTLY_TIMEOUT_S,
        command=command,
        extra_env={
            # the UI reports page views to Evidently's servers unless told not to
            "DO_NOT_TRACK": "1",
            # /api/version would otherwise run `git rev-parse` in Evidently's install folder on
            # every health check, and report this checkout's commit as its own
            "GIT_COMMIT": "-",
        },
    )


def _mlflow_server(settings: Settings) -> Server:
    mlflow_dir = settings.mlflow_dir
    command = [
        *tool("mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{mlflow_dir / 'mlflow.db'}",
        "--artifacts-destination",
        str(mlflow_dir / "artifacts"),
        "--host",
        settings.bind_host,
        "--port",
        str(settings.mlflow_port),
        "-w",
        "1",
    ]
    return Server(
        name="mlflow",
        url=settings.tracking_uri,
        port=settings.mlflow_port,
        port_variable="FRAUDLAB_MLFLOW_PORT",
        external=bool(settings.mlflow_tracking_uri),
        healthy=lambda: mlflow_healthy(settings),
        timeout_s=MLFLOW_TIMEOUT_S,
        command=command,
        # One worker and no job runner: 2 processes and ~400 MB instead of ~15 and 1.7 GB.
        extra_env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )


def bootstrap(settings: Settings) -> bool:
    """Data, features and a champion model: each stage skips itself when already done."""
    from features.transforms import TRANSFORM_VERSION
    from model.registry import CHAMPION, resolve_alias, version_tags
    from pipelines import tasks
    from pipelines.data import read_meta

    try:
        tasks.prepare_data(settings)
        tasks.prepare_features(settings)
        champion = resolve_alias(settings)
        tags = version_tags(settings, champion[0]) if champion else {}
        world = read_meta(settings)["transactions_hash"]
        why = None
        if champion is None:
            why = f"no '{CHAMPION}' for model '{settings.model_name}'"
        elif tags.get("transform_version") != TRANSFORM_VERSION:
            why = (
                f"{CHAMPION} v{champion[0]} was trained with transform "
                f"'{tags.get('transform_version')}', this code runs '{TRANSFORM_VERSION}' "
                "(serving would refuse it)"
            )
        elif tags.get("world_hash") != world:
            why = (
                f"{CHAMPION} v{champion[0]} was trained on another generated world (the data "
                "settings changed since)"
            )
        if why is not None:
            console.print(f"  {why}: training one")
            version = tasks.train_and_register(settings)
            console.print(f"[green]✓[/] registered {settings.model_name} version {version}")
        else:
            console.print(f"[green]✓[/] {CHAMPION} is {settings.model_name} version {champion[0]}")
        if not settings.serving_url and running(settings, "serving") is None:
            serving_release(settings)  # serving about to start: it runs the checked-out code
    except Exception as exc:  # noqa: BLE001 - reported with the next step; up then exits 1
        console.print(f"[bold red]✗[/] bootstrap failed: {type(exc).__name__}: {exc}")
        console.print(
            "  next: run the failing stage alone for the full traceback "
            "(`fraudlab data`, `fraudlab features` or `fraudlab train`)"
        )
        return False
    return True


def serving_release(settings: Settings) -> releases.Release:
    """Deploy the working tree as serving's release unless the deployed one has its very
    content, and return it.

    ``up`` calls it before it starts serving, so bringing the stack up serves the code that is
    checked out; a running serving process keeps its release until ``fraudlab deploy``.
    """
    before = releases.current(settings)
    if before is not None and before.content_hash == releases.tree_hash():
        return before
    release = releases.build(settings)
    releases.set_current(settings, release)
    console.print(f"[green]✓[/] deployed the working tree to serving as {release.describe()}")
    return release


def _supervised(record: Started) -> bool:
    """Whether the serving process is the supervisor that switches releases in place (serving
    started by an earlier fraudlab ran ``bentoml serve`` itself)."""
    return record.command[-2:] == supervisor_command()[-2:]


def _start_serving(settings: Settings) -> bool:
    if not settings.serving_url and releases.current(settings) is None:
        serving_release(settings)
    return _ensure_server(
        settings,
        Server(
            name="serving",
            url=settings.serving_base_url,
            port=settings.serving_port,
            port_variable="FRAUDLAB_SERVING_PORT",
            external=bool(settings.serving_url),
            # The port opens seconds before the worker has loaded the model: only /readyz counts.
            healthy=lambda: serving_ready(settings),
            timeout_s=SERVING_TIMEOUT_S,
            # The supervisor (control.serve) holds the port and runs the deployed release's
            # BentoML worker on it; `fraudlab deploy` switches workers without a gap.
            command=supervisor_command(),
            # Serving empties $BENTOML_HOME/prometheus_multiproc_dir at start: two stacks sharing
            # the default home would overwrite each other's /metrics. Each stack gets its own.
            extra_env={"BENTOML_HOME": str(settings.home.resolve() / "bentoml")},
        ),
    )


def _start_traffic(settings: Settings) -> bool:
    record = running(settings, "traffic")
    if record is not None:
        console.print(f"[green]✓[/] traffic simulator already running (pid {record.pid})")
        # It may be backing off after a serving outage; its next retry finds serving back.
        return _wait_until(
            "traffic", lambda: traffic_healthy(settings), TRAFFIC_RECOVERY_S, settings, record
        )
    if replay_finished(settings):
        console.print(
            "[green]✓[/] traffic replay already finished: the clock is at the end of the "
            "generated future (more days: FRAUDLAB_FUTURE_DAYS and `fraudlab data --force`)"
        )
        return True
    record = _spawn(
        settings,
        "traffic",
        [sys.executable, "-m", "fraudlab.cli", "simulate"],
        settings.serving_base_url,
    )
    console.print(
        f"[bold cyan]→[/] started traffic simulator (pid {record.pid}) at "
        f"{settings.traffic_rps:g} req/s"
    )
    # The simulator has no endpoint: it is healthy when it keeps running and reports progress.
    deadline = time.monotonic() + 60.0
    time.sleep(TRAFFIC_SETTLE_S)
    while time.monotonic() < deadline:
        if not record.alive():
            break
        state = traffic_state(settings)
        if state is not None and float(state.get("updated_at", 0)) >= record.started_at:
            console.print("[green]✓[/] traffic simulator sending")
            return True
        time.sleep(1.0)
    ok = record.alive()
    if not ok:
        console.print(
            f"[bold red]✗[/] traffic simulator exited; last lines of "
            f"{log_file(settings, 'traffic')}:"
        )
        _print_tail(log_file(settings, "traffic"), 15)
    else:
        console.print(
            f"[yellow]![/] traffic simulator running but has not reported progress; "
            f"read {log_file(settings, 'traffic')}"
        )
    return ok


def _airflow_servers(settings: Settings, env: dict[str, str]) -> list[Server]:
    airflow = tool("airflow")
    api = settings.airflow_base_url
    processes = {
        "airflow-scheduler": [*airflow, "scheduler", "--skip-serve-logs"],
        "airflow-triggerer": [*airflow, "triggerer", "--skip-serve-logs"],
        "airflow-dag-processor": [*airflow, "dag-processor"],
    }
    command = [*airflow, "api-server", "--host", settings.bind_host]
    command += ["--port", str(settings.airflow_port), "--workers", "1"]
    servers = [
        Server(
            name="airflow-api-server",
            url=api,
            port=settings.airflow_port,
            port_variable="FRAUDLAB_AIRFLOW_PORT",
            external=False,
            healthy=lambda: airflow_healthy(settings, "airflow-api-server"),
            timeout_s=AIRFLOW_TIMEOUT_S,
            command=command,
            extra_env=env,
        )
    ]
    for name, command in processes.items():
        servers.append(
            Server(
                name=name,
                url=api,
                port=None,
                port_variable="",
                external=False,
                healthy=lambda name=name: airflow_healthy(settings, name),
                timeout_s=AIRFLOW_TIMEOUT_S,
                command=command,
                extra_env=env,
            )
        )
    return servers


def _start_airflow(settings: Settings) -> bool:
    """Airflow's four processes in the DAG runs' own home; prints where to log in."""
    from control.airflow import airflow_environment, airflow_home, ensure_database

    env = airflow_environment(settings, base=child_environment(settings))
    # Tasks the scheduler runs report to the API server's execution API at this address
    # (Airflow's default assumes localhost:8080).
    env["AIRFLOW__API__BASE_URL"] = settings.airflow_base_url
    if ensure_database(settings, env) != 0:
        console.print(
            f"[bold red]✗[/] `airflow db migrate` failed (output above); delete "
            f"{airflow_home(settings)} and run `fraudlab up --airflow` again"
        )
        return False
    ok = _ensure_servers(settings, _airflow_servers(settings, env))
    if ok:
        console.print(
            f"  Airflow UI: {settings.airflow_base_url} — user admin, password in "
            f"{airflow_home(settings) / AIRFLOW_PASSWORDS_FILE}. DAGs start paused: unpause one "
            "to let the scheduler run it on its schedule, or trigger it by hand."
        )
    return ok


def up(settings: Settings, traffic: bool = True, airflow: bool = False) -> int:
    """Start (or complete) the embedded stack; 0 only when every component is healthy."""
    _prepare_dirs(settings)
    # Remembered so that a later `status` judges the stack as it was asked for (without traffic,
    # with Airflow).
    (settings.run_dir / "stack.json").write_text(
        json.dumps({"traffic": traffic, "airflow": airflow})
    )
    started = time.monotonic()
    # Side by side (each is mostly interpreter start-up). The Evidently UI only reads the
    # workspace: it comes up even when bootstrap then fails, and its history is worth seeing.
    ok = _ensure_servers(settings, [_mlflow_server(settings), _evidently_server(settings)])
    ok = ok and bootstrap(settings) and _start_serving(settings)
    if ok and traffic:
        ok = _start_traffic(settings)
    if ok and airflow:
        ok = _start_airflow(settings)
    console.print(f"  up took {time.monotonic() - started:.1f}s")
    code = status(settings, include_traffic=traffic, include_airflow=airflow)
    return 0 if ok and code == 0 else 1


# --- down -------------------------------------------------------------------------------------


def _stop(settings: Settings, component: str) -> str | None:
    record = _read_pid_file(settings, component)
    if record is None:
        return None
    if not record.alive():
        _pid_file(settings, component).unlink(missing_ok=True)
        return (
            f"{component}: pid {record.pid} had already exited (or the pid now belongs to "
            "another process, left alone); stale pid file removed"
        )
    started = time.monotonic()
    # Snapshot before signalling: once the supervisor exits, its orphaned workers are
    # re-parented and can no longer be traced back to it.
    tree = record.processes()

    def remaining() -> list[int]:
        return [
            pid
            for pid, start in tree.items()
            if _start_time(pid) == start and _pgid_of(pid) is not None
        ]

    # The group leader first: MLflow and BentoML's supervisor stop their own workers cleanly
    # (serving flushes its prediction log on shutdown).
    try:
        os.killpg(record.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    while remaining() and time.monotonic() - started < STOP_GRACE_S:
        time.sleep(0.2)
    how = "stopped"
    if remaining():
        for pid in remaining():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        how = f"killed (still running {STOP_GRACE_S:.0f}s after SIGTERM)"
        deadline = time.monotonic() + 5.0
        while remaining() and time.monotonic() < deadline:
            time.sleep(0.1)
    _pid_file(settings, component).unlink(missing_ok=True)
    return (
        f"{component}: {how} pid {record.pid} ({len(tree)} processes) "
        f"in {time.monotonic() - started:.1f}s"
    )


RESTARTABLE = ("serving", "traffic", "evidently")


def restart(settings: Settings, component: str) -> int:
    """Stop one component we started and start it again with the settings as they are now
    (``Settings.reloaded``: live overrides changed since this process started apply)."""
    if component not in RESTARTABLE:
        console.print(
            f"[bold red]✗[/] cannot restart '{component}': choose one of {', '.join(RESTARTABLE)}"
        )
        return 2
    if settings.stack == "compose" and settings.in_container:
        return _restart_in_container(settings, component)
    fresh = settings.reloaded()
    message = _stop(fresh, component)
    if message:
        console.print(f"[green]✓[/] {message}")
    started = {
        "serving": _start_serving,
        "traffic": _start_traffic,
        "evidently": lambda s: _ensure_server(s, _evidently_server(s)),
    }[component](fresh)
    return 0 if started else 1


def _restart_in_container(settings: Settings, component: str) -> int:
    """Inside the containerised stack: serving restarts through its supervisor
    (``control.serve``); other containers restart from the host."""
    if component != "serving":
        console.print(
            f"[bold red]✗[/] {component} runs in a container of its own: restart it from the "
            f"host (`docker compose restart {component}`)"
        )
        return 2
    try:
        serve.restart(settings)
    except (serve.DeployFailed, TimeoutError) as exc:
        console.print(f"[bold red]✗[/] {exc}")
        return 1
    console.print("[green]✓[/] serving restarted and ready")
    return 0


def _deploy_in_container(settings: Settings) -> int:
    """Inside the containerised stack: the release goes to the home volume and serving's
    supervisor (``fraudlab serve``) switches to it. The working tree is the code this command
    runs from: the image's, or the candidate's checkout when run from its root."""
    was = (serve.status(settings) or {}).get("release") or "the image's code"
    return _switch(settings, releases.build(settings), f"was {was}")


def _switch(settings: Settings, release: releases.Release, was: str) -> int:
    """Point serving's supervisor at ``release`` and wait until it answers on it; the pointer
    goes back when the release does not start (the previous one still serves)."""
    before = releases.current(settings)
    console.print(f"[bold cyan]→[/] deploying {release.describe()} to serving ({was})")
    started = time.monotonic()
    try:
        serve.deploy(settings, release)
    except serve.DeployFailed as exc:
        if before is not None:
            releases.set_current(settings, before)
        else:
            releases.clear_current(settings)
        console.print(f"[bold red]✗[/] {exc}")
        return 1
    except TimeoutError as exc:
        console.print(f"[bold red]✗[/] {exc}")
        return 1
    console.print(
        f"[green]✓[/] serving runs {release.describe()}: switched in"
        f" {time.monotonic() - started:.1f}s, the previous worker drains its requests"
    )
    return 0


def _record_worker_start(settings: Settings) -> None:
    """The serving pid file says when the worker answering now started (a deploy starts a new
    worker under the same supervisor): what was logged since is that worker's."""
    found = serve.status(settings) or {}
    path = _pid_file(settings, "serving")
    try:
        record = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return
    if found.get("started_at"):
        record["started_at"] = float(found["started_at"])
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        tmp.replace(path)


def deploy(settings: Settings) -> int:
    """Ship the working tree to serving as a new release (its own id, the commit it was built
    from) and switch serving to it without dropping a request: the supervisor starts the new
    release's worker on serving's socket, switches when it answers, and drains the old one.
    0 when serving answers on the new release.
    """
    if settings.stack == "compose" and settings.in_container:
        return _deploy_in_container(settings)
    if settings.serving_url:
        console.print(
            f"[bold red]✗[/] serving is external ({settings.serving_url}): deploy it where it runs"
        )
        return 2
    before = releases.current(settings)
    release = releases.build(settings)
    was = f"was {before.describe()}" if before else "nothing deployed before"
    record = running(settings, "serving")
    if record is not None and _supervised(record) and serving_ready(settings):
        code = _switch(settings, release, was)
        if code == 0:
            _record_worker_start(settings)
        return code
    # not running, or started by an earlier fraudlab that ran BentoML without a supervisor:
    # start serving (again) on the new release
    releases.set_current(settings, release)
    console.print(f"[bold cyan]→[/] deploying {release.describe()} to serving ({was})")
    message = _stop(settings, "serving")
    if message:
        console.print(f"  {message}")
    return 0 if _start_serving(settings) else 1


def down(settings: Settings) -> int:
    """Stop the processes ``up`` started (Airflow, traffic, serving, Evidently, MLflow), nothing
    else."""
    stopped = 0
    for component in reversed(COMPONENTS):
        message = _stop(settings, component)
        if message is not None:
            stopped += 1
            console.print(f"[green]✓[/] {message}")
    if stopped == 0:
        console.print(f"  nothing to stop: no fraudlab processes recorded in {settings.run_dir}")
    return 0


# --- status -----------------------------------------------------------------------------------


def _dir_size(path: Path, pattern: str = "*") -> tuple[int, int]:
    """Files directly in ``path`` matching ``pattern`` (archives below it are not counted)."""
    files = [p for p in path.glob(pattern) if p.is_file()] if path.exists() else []
    return len(files), sum(p.stat().st_size for p in files)


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _pid_cell(settings: Settings, component: str, external: bool) -> str:
    if external:
        return "external"
    record = running(settings, component)
    return str(record.pid) if record else "-"


def _asked_for(settings: Settings, component: str, default: bool) -> bool:
    """Whether the last ``up`` was asked to start ``component`` ("traffic", "airflow")."""
    try:
        return bool(json.loads((settings.run_dir / "stack.json").read_text())[component])
    except (FileNotFoundError, ValueError, KeyError):
        return default


def _workspace_runs(settings: Settings) -> str:
    from monitoring.sources import workspace_dir

    runs = len(list(workspace_dir(settings).glob("*/snapshots/*.json")))
    return f"{runs} monitoring runs in the workspace"


def _airflow_rows(settings: Settings, table: Table) -> bool:
    """One row per Airflow process; True when all are healthy."""
    records = {name: running(settings, name) for name in AIRFLOW_COMPONENTS}
    health = airflow_health(settings)
    all_ok = True
    for name, record in records.items():
        ok = airflow_healthy(settings, name, health) if health is not None else False
        all_ok &= ok
        if name == "airflow-api-server":
            url = settings.airflow_base_url
            detail = "UI and REST API"
        else:
            url = ""
            key = AIRFLOW_HEARTBEATS[name]
            last = ((health or {}).get(key) or {}).get(f"latest_{key}_heartbeat")
            detail = f"last heartbeat {str(last)[11:19]} UTC" if last else "no heartbeat"
        table.add_row(name, str(record.pid) if record else "-", url, _health(ok), detail)
    return all_ok


def status(
    settings: Settings, include_traffic: bool | None = None, include_airflow: bool | None = None
) -> int:
    """Print one row per component plus the data the monitors depend on; 0 if all healthy.

    The traffic simulator counts only when the stack was started with it (the default);
    Airflow only when it was started with ``--airflow`` or runs.
    """
    if include_traffic is None:
        include_traffic = _asked_for(settings, "traffic", True)
    if include_airflow is None:
        include_airflow = _asked_for(settings, "airflow", False)
    table = Table(title=f"fraudlab stack ({settings.home.resolve()})", title_justify="left")
    for column in ("component", "pid", "url", "health", "detail"):
        table.add_column(column)
    all_ok = True

    ok = mlflow_healthy(settings)
    all_ok &= ok
    table.add_row(
        "mlflow",
        _pid_cell(settings, "mlflow", bool(settings.mlflow_tracking_uri)),
        settings.tracking_uri,
        _health(ok),
        "GET /health",
    )

    ok = evidently_healthy(settings)
    all_ok &= ok
    table.add_row(
        "evidently",
        _pid_cell(settings, "evidently", bool(settings.evidently_url)),
        settings.evidently_base_url,
        _health(ok),
        "GET /api/version" if settings.evidently_url else _workspace_runs(settings),
    )

    ready = serving_ready(settings)
    all_ok &= ready
    version = served_model_version(settings) if ready else None
    gates, gate_warning = gate_note(settings, version)
    detail = f"model version {version}{gates}" if version else "GET /readyz"
    release = releases.current(settings) if not settings.serving_url else None
    if release is not None:
        detail += f", release {release.describe()}"
    table.add_row(
        "serving",
        _pid_cell(settings, "serving", bool(settings.serving_url)),
        settings.serving_base_url,
        _health(ready),
        detail,
    )

    record = running(settings, "traffic")
    state = traffic_state(settings)
    alive = traffic_healthy(settings)
    finished = record is None and replay_finished(settings)
    if (include_traffic or record is not None) and not finished:
        all_ok &= alive
    if state:
        detail = traffic_progress(state)
        if state.get("finished"):
            detail += " (replay finished)"
        elif state.get("last_error") and record is not None:
            detail += f"; retrying: {str(state['last_error'])[:60]}"
    else:
        detail = "no progress yet"
    if record and state and state.get("last_error"):
        traffic_health = "[yellow]retrying[/]"
    elif record:
        traffic_health = _health(alive)
    else:
        traffic_health = "[green]finished[/]" if finished else "[dim]stopped[/]"
    table.add_row(
        "traffic",
        str(record.pid) if record else "-",
        f"→ {settings.serving_base_url}",
        traffic_health,
        detail,
    )
    airflow_shown = include_airflow or any(running(settings, c) for c in AIRFLOW_COMPONENTS)
    if airflow_shown:
        all_ok &= _airflow_rows(settings, table)
    out.print(table)
    if gate_warning:  # a warning, not a fault: the stack runs as asked
        out.print(f"[yellow]![/] {gate_warning}")
    expected = {
        "mlflow": settings.tracking_uri,
        "evidently": settings.evidently_base_url,
        "serving": settings.serving_base_url,
        "traffic": settings.serving_base_url,
        **dict.fromkeys(AIRFLOW_COMPONENTS, settings.airflow_base_url),
    }
    for component, url in expected.items():
        started = running(settings, component)
        if started is not None and started.url and started.url != url:
            out.print(
                f"[yellow]![/] {component} (pid {started.pid}) was started for {started.url}, "
                f"but these settings point at {url}: export the FRAUDLAB_* variables `up` ran "
                "with, or the health above describes someone else's server"
            )

    if airflow_shown:
        from control.airflow import airflow_home

        out.print(
            f"Airflow UI: {settings.airflow_base_url} — user admin, password in "
            f"{airflow_home(settings) / AIRFLOW_PASSWORDS_FILE}"
        )
    print_data(settings)
    return print_verdict(
        all_ok, "`fraudlab logs <component>` shows why, `fraudlab up` starts what is missing"
    )


def traffic_progress(state: dict) -> str:
    """The simulator's totals and simulated clock, from its progress file."""
    return (
        f"{state.get('sent_total', 0):,} sent, {state.get('errors_total', 0):,} errors,"
        f" clock {str(state.get('clock', '?'))[:16].replace('T', ' ')}"
    )


def print_data(settings: Settings) -> None:
    """What the monitors live on, below the components: prediction log, labels, clock, the
    scheduled jobs."""
    n_files, n_bytes = _dir_size(settings.prediction_log_dir, "predictions-*.jsonl")
    out.print(
        f"prediction log: {n_files} files, {_human_bytes(n_bytes)} "
        f"in {settings.prediction_log_dir}"
    )
    try:
        from pipelines.data import read_clock, read_labels

        out.print(
            f"labels: {len(read_labels(settings)):,} chargebacks in {settings.label_dir}; "
            f"simulated clock {read_clock(settings):%Y-%m-%d %H:%M} UTC"
        )
    except FileNotFoundError:
        out.print("labels: no data generated yet (`fraudlab data`)")
    from pipelines import schedules

    for line in schedules.describe(settings):
        # a pause is an operator's choice, not a fault: shown, not counted against health
        style = "yellow" if "PAUSED" in line else "dim"
        out.print(f"[{style}]schedule {line}[/]", highlight=False)


def print_verdict(all_ok: bool, next_steps: str) -> int:
    """The last line of a status: healthy or not, and what to do about it; the exit code."""
    if all_ok:
        out.print("[green]all components are healthy[/]")
        return 0
    out.print(f"not all components are healthy: {next_steps}")
    return 1


def _health(ok: bool) -> str:
    return "[green]healthy[/]" if ok else "[red]down[/]"


# --- logs -------------------------------------------------------------------------------------


def _tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of a file, reading only its end (serving logs grow large)."""
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        block = 8192
        data = b""
        while size > 0 and data.count(b"\n") <= lines:
            step = min(block, size)
            size -= step
            handle.seek(size)
            data = handle.read(step) + data
            block *= 2
    return data.decode(errors="replace").splitlines()[-lines:]


def _print_tail(path: Path, lines: int) -> None:
    if not path.exists():
        console.print(f"  (no log at {path})")
        return
    for line in _tail(path, lines):
        out.print(f"  {line}", markup=False)


def logs(settings: Settings, component: str | None, lines: int) -> int:
    """Print the tail of one component's log, or of each."""
    if component is not None and component not in COMPONENTS:
        console.print(
            f"[bold red]✗[/] unknown component '{component}'; "
            f"choose one of: {', '.join(COMPONENTS)}"
        )
        return 2
    found = False
    for name in [component] if component else list(COMPONENTS):
        path = log_file(settings, name)
        if not path.exists():
            if component:
                console.print(
                    f"no log for {name} at {path}: has `fraudlab up` run with "
                    f"FRAUDLAB_HOME={settings.home}?"
                )
            continue
        found = True
        out.rule(f"{name} — {path}")
        _print_tail(path, lines)
    return 0 if found else 1
