"""``fraudlab status`` inside the containerised stack: each service read from its own health.

Owns: the status a container of the stack prints (the candidate's workstation, a lab runner):
one row per long-running service of docker-compose.yml, each judged the way compose runs it —
by the health endpoint its healthcheck calls (MLflow, serving, the Evidently UI, Airflow's API
server and the heartbeats it reports), by answering on the stack's network (PostgreSQL, Redis),
and the traffic simulator by its progress file in the shared home volume (``traffic.progress``:
what its healthcheck reads). The embedded stack's status (``control.stack``) judges the
processes it started; inside the stack there is none of ours to find, so no pid is looked at.

Must not: need the Docker socket (the workstation has none: the containers' states are the
host's ``make status STACK=compose``), or start, stop or restart anything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from rich.table import Table

from control import releases
from control.launch import mlflow_healthy, serving_ready
from control.stack import (
    airflow_health,
    evidently_healthy,
    out,
    print_data,
    print_verdict,
    served_model_version,
    traffic_progress,
    traffic_state,
)
from foundation.settings import Settings
from traffic import progress

# Airflow's API server on the stack's network (docker-compose.yml's service and port); the
# settings' airflow_port is the one published on the host.
AIRFLOW_URL = "http://airflow-apiserver:8080"
# Which entry of Airflow's /api/v2/monitor/health carries each service's heartbeat.
AIRFLOW_HEARTBEATS = {"airflow-scheduler": "scheduler", "airflow-dag-processor": "dag_processor"}
CONNECT_TIMEOUT_S = 3


@dataclass(frozen=True)
class Row:
    service: str
    address: str
    healthy: bool
    health: str  # what the health column says
    detail: str


def _plain(service: str, address: str, healthy: bool, detail: str) -> Row:
    return Row(service, address, healthy, "healthy" if healthy else "down", detail)


def postgres_answers(url: str) -> tuple[bool, str]:
    """A query on the Feast registry's database (the stack's PostgreSQL, as Feast reaches it)."""
    import psycopg

    try:
        # SQLAlchemy's URL names its driver; libpq wants a plain postgresql:// URL.
        plain = url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(plain, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return False, str(exc).strip().splitlines()[0][:80]
    return True, "Feast registry database answers"


def redis_answers(connection: str) -> tuple[bool, str]:
    """PING with the online store's credentials (Feast's ``host:port,key=value,…`` string)."""
    import redis

    address, *options = connection.split(",")
    host, _, port = address.partition(":")
    password = dict(option.partition("=")[::2] for option in options).get("password")
    client = redis.Redis(
        host=host,
        port=int(port or 6379),
        password=password,
        socket_timeout=CONNECT_TIMEOUT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        return False, str(exc)[:80]
    finally:
        client.close()
    return True, "PING: Feast's online store answers"


def traffic_row(settings: Settings, state: dict | None, now: float) -> Row:
    """The simulator, from its progress file: sending or finished is healthy; stopped, stalled,
    retrying or never started is not."""
    try:
        from pipelines.data import read_clock

        clock: str | None = read_clock(settings).isoformat()
    except FileNotFoundError:
        clock = None
    reading = progress.judge(state, now, clock)
    health = {progress.SENDING: "healthy"}.get(reading.state, reading.state)
    detail = f"{traffic_progress(state)}; {reading.detail}" if state else reading.detail
    return Row("traffic", f"→ {settings.serving_base_url}", reading.healthy, health, detail)


def airflow_rows(health: dict | None) -> list[Row]:
    """The API server by its metadata DB, the others by the heartbeats it reports."""
    silent = "GET /api/v2/monitor/health: no answer"
    if health is None:
        return [
            _plain(name, AIRFLOW_URL if name == "airflow-apiserver" else "", False, silent)
            for name in ("airflow-apiserver", *AIRFLOW_HEARTBEATS)
        ]
    database = (health.get("metadatabase") or {}).get("status")
    rows = [
        _plain("airflow-apiserver", AIRFLOW_URL, database == "healthy", f"metadata DB {database}")
    ]
    for name, key in AIRFLOW_HEARTBEATS.items():
        entry = health.get(key) or {}
        last = entry.get(f"latest_{key}_heartbeat")
        detail = f"last heartbeat {str(last)[11:19]} UTC" if last else "no heartbeat"
        rows.append(_plain(name, "", entry.get("status") == "healthy", detail))
    return rows


def rows(settings: Settings) -> list[Row]:
    """Every long-running service of the stack, in docker-compose.yml's order."""
    found: list[Row] = []
    if settings.feast_registry_url:
        url = urlsplit(settings.feast_registry_url)
        address = f"{url.hostname}:{url.port or 5432}"  # never the credentials
        found.append(_plain("postgres", address, *postgres_answers(settings.feast_registry_url)))
    if settings.feast_redis:
        address = settings.feast_redis.split(",")[0]
        found.append(_plain("redis", address, *redis_answers(settings.feast_redis)))
    found.append(_plain("mlflow", settings.tracking_uri, mlflow_healthy(settings), "GET /health"))
    ready = serving_ready(settings)
    version = served_model_version(settings) if ready else None
    detail = f"model version {version}" if version else "GET /readyz"
    release = releases.current(settings)
    detail += f", release {release.describe()}" if release else ", the image's code"
    found.append(_plain("serving", settings.serving_base_url, ready, detail))
    found.append(traffic_row(settings, traffic_state(settings), time.time()))
    found.append(
        _plain(
            "monitoring",
            settings.evidently_base_url,
            evidently_healthy(settings),
            "Evidently UI, GET /api/version",
        )
    )
    found.extend(airflow_rows(airflow_health(settings, AIRFLOW_URL)))
    return found


def status(settings: Settings) -> int:
    """The stack's services as this container reaches them, then the data; 0 if all healthy."""
    table = Table(
        title="fraudlab containerised stack (each service's own health, from inside)",
        title_justify="left",
    )
    for column in ("service", "address", "health", "detail"):
        table.add_column(column)
    found = rows(settings)
    for row in found:
        colour = "green" if row.healthy else "red"
        table.add_row(row.service, row.address, f"[{colour}]{row.health}[/]", row.detail)
    out.print(table)
    print_data(settings)
    return print_verdict(
        all(row.healthy for row in found),
        "serving restarts with `fraudlab restart serving`; the other services' containers are "
        "run from the host (`make status STACK=compose` there says why)",
    )
