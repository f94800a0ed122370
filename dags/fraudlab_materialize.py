"""# fraudlab_materialize

Apply the Feast feature definitions, then materialise the online store up to the stack's clock
(`<home>/data/clock.json`), so serving reads features as fresh as the clock says.

Wires `features.store.apply_definitions` and `features.store.materialize`; the same stages run
by `fraudlab features`. Configuration comes from `FRAUDLAB_*` variables (`foundation.settings`).
Run it with `make materialize` (an isolated `airflow dags test`).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

DEFAULT_ARGS = {"owner": "fraudlab", "retries": 2, "retry_delay": timedelta(seconds=30)}


@dag(
    dag_id="fraudlab_materialize",
    doc_md=__doc__,
    schedule="@hourly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["fraudlab", "features"],
)
def fraudlab_materialize() -> None:
    @task
    def apply_definitions() -> None:
        """Register the entities, feature views and feature services in the Feast registry."""
        from features import store
        from foundation.settings import get_settings

        settings = get_settings()
        store.apply_definitions(store.open_store(settings), settings)

    @task
    def materialize_online_store() -> str:
        """Materialise every feature view into the online store up to the stack's clock."""
        from features import store
        from foundation.settings import get_settings
        from pipelines import data

        settings = get_settings()
        now = data.read_clock(settings)
        store.materialize(store.open_store(settings), now.to_pydatetime())
        return now.isoformat()

    apply_definitions() >> materialize_online_store()


fraudlab_materialize()
