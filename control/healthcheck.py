"""Container healthchecks of the containerised stack: ``python -m control.healthcheck <check>``.

Owns: the judgement "is this container doing its job" for docker-compose.yml's ``healthcheck:``
entries, as exit codes (0 healthy, 1 not) with one line saying why.

    http <url>             the URL answers 2xx within 5 s (MLflow /health, serving /readyz, …)
    traffic                the simulator's progress file says it sends (recent progress, not
                           stuck retrying, not stopped) or has finished the replay
                           (``traffic.progress``: the workstation's status reads it the same way)
    airflow-job <type>     this container's Airflow job (SchedulerJob, DagProcessorJob) is
                           running and heartbeating in the metadata DB

Must not: import anything heavy. Docker runs these every few seconds on a 2-core machine; a
check that imports Airflow costs ~10 s of CPU (``airflow jobs check``), one that reads a row
costs ~0.1 s.
"""

from __future__ import annotations

import socket
import sys
import time
import urllib.error
import urllib.request

# An Airflow job heartbeats every ~5 s; three missed heartbeats and more is a stuck job.
AIRFLOW_HEARTBEAT_STALE_S = 60.0


def check_http(url: str) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return 200 <= response.status < 300, f"{url} → {response.status}"
    except urllib.error.HTTPError as exc:
        return False, f"{url} → {exc.code}"
    except OSError as exc:
        return False, f"{url} unreachable: {exc}"


def check_traffic() -> tuple[bool, str]:
    from foundation.settings import get_settings
    from traffic import progress

    reading = progress.judge(progress.read_state(get_settings()), time.time())
    return reading.healthy, f"{reading.state}: {reading.detail}"


def check_airflow_job(job_type: str) -> tuple[bool, str]:
    """The newest running job of ``job_type`` started by this container heartbeats."""
    import os

    import psycopg

    # Airflow's SQLAlchemy URL names its driver; libpq wants a plain postgresql:// URL.
    url = os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace(
        "postgresql+psycopg://", "postgresql://"
    )
    # Airflow records socket.getfqdn() as a job's hostname (its default hostname_callable).
    hostname = socket.getfqdn()
    with psycopg.connect(url, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM now() - max(latest_heartbeat)) FROM job"
            " WHERE job_type = %s AND state = 'running' AND hostname = %s",
            (job_type, hostname),
        ).fetchone()
    if row is None or row[0] is None:
        return False, f"no running {job_type} from {hostname}"
    age = float(row[0])
    return age < AIRFLOW_HEARTBEAT_STALE_S, f"{job_type} heartbeat {age:.0f}s ago"


def main(argv: list[str]) -> int:
    match argv:
        case ["http", url]:
            ok, why = check_http(url)
        case ["traffic"]:
            ok, why = check_traffic()
        case ["airflow-job", job_type]:
            ok, why = check_airflow_job(job_type)
        case _:
            print(__doc__, file=sys.stderr)
            return 2
    print(("healthy: " if ok else "unhealthy: ") + why)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
