"""Feature freshness: how old the online features are at the stack's clock, per feature view.

Owns: the freshness judgement of every feature view in the Feast registry and its outputs
(``freshness.json``, ``freshness.html`` in the run folder; ages and verdicts in the Evidently
workspace's "freshness" tab through ``monitoring.gauges``). Must not: write to the feature
store, materialise (``features.store`` does), or read the online store other than through
Feast's own API — the embedded stack keeps it in SQLite, the compose stack in Redis, and the
monitor must read both the same way.

Two kinds of view, two sources of truth, both independent of the store behind Feast:

- **Batch views** are materialised up to each simulated midnight (the traffic simulator, the
  materialise DAG). Their age is the clock minus the end of their latest materialisation
  interval in the registry. ``user_profile`` is materialised a day ahead (facts created with
  the account, ``features.store.CREATED_WITH_ENTITY``): its healthy age is negative, and
  people read it as "ahead of the clock by …" (``age_text``), never as a negative age.
- **The push view** (``user_velocity``) is written by serving after each scored transaction.
  Its freshness is read back: for the users of the newest ``Settings.freshness_push_sample``
  production requests logged more than ``PUSH_GRACE_S`` ago (pushes are batched each second),
  the online ``last_txn_ts`` must have reached the event time serving logged. A user whose
  online state is older lags by the difference (simulated seconds); a missing state counts as
  lagging without bound.

Each view's expected freshness is its ``freshness_sla`` tag (``features/definitions.py``, read
from the registry; from the code's definition when the registry predates the tag), a
``pandas.Timedelta`` string in simulated time. Status per view:

- batch: ``ok`` when age ≤ SLA; ``warn`` beyond it; ``alert`` beyond SLA +
  ``Settings.freshness_alert_after_hours``, or when the age reaches the view's TTL (Feast then
  serves nulls). With the daily SLA of 26 h, a materialisation that stops warns two hours after
  the first midnight it misses and alerts twelve hours later.
- push: ``warn`` when any probed user lags by more than the SLA (a lost push: that user's next
  score sees wrong velocity features), ``alert`` when at least
  ``Settings.freshness_push_alert_share`` of them do (pushes have stopped);
  ``insufficient_data`` when no recent production request can be probed.

The judgement is pure (``compute_freshness``); ``run_freshness`` does the I/O.
"""

from __future__ import annotations

import html
import json
import math
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from foundation.settings import Settings
from model.record import PredictionRecord
from monitoring import gauges, sources

if TYPE_CHECKING:
    from feast import FeatureStore

Status = Literal["ok", "warn", "alert", "insufficient_data"]
_RANK: dict[str, int] = {"ok": 0, "warn": 1, "alert": 2}
SLA_TAG = "freshness_sla"
KIND_TAG = "kind"
PUSH = "push"
PUSH_GRACE_S = 10.0  # wall seconds: a record this old has had its push batched and written
PUSH_TS_FEATURE = "last_txn_ts"
TS_TOLERANCE_S = 1e-3
N_EXAMPLES = 5


@dataclass(frozen=True)
class ViewState:
    """What the registry says about one feature view."""

    name: str
    kind: str  # "batch" or "push" (the view's ``kind`` tag)
    ttl_s: float | None  # None: no TTL (values never expire)
    sla_s: float | None  # None: no freshness expectation declared
    materialized_until: pd.Timestamp | None  # end of the latest materialisation interval


@dataclass(frozen=True)
class PushProbe:
    """Serving's recent pushes read back: per probed user, how far the online state lags."""

    users: int
    lags_s: dict[int, float]  # user_id → lag (simulated seconds; inf when nothing is online)

    @classmethod
    def from_states(
        cls, scored_ts: dict[int, float], online_ts: dict[int, float | None]
    ) -> PushProbe:
        """``scored_ts``: each user's newest logged event time; ``online_ts``: their online
        ``last_txn_ts`` (None when the store has nothing)."""
        lags = {}
        for user, event_ts in scored_ts.items():
            online = online_ts.get(user)
            if online is None or (isinstance(online, float) and math.isnan(online)):
                lags[user] = math.inf
            else:
                lags[user] = max(0.0, event_ts - float(online))
        return cls(len(scored_ts), lags)


@dataclass
class ViewFreshness:
    view: str
    kind: str
    status: Status
    detail: str
    sla_s: float | None
    ttl_s: float | None
    materialized_until: str | None
    age_s: float | None  # batch: clock − materialized_until; push: the largest lag
    probed_users: int | None = None
    lagging_users: int | None = None  # lag beyond the SLA
    examples: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class FreshnessResult:
    status: Status
    clock: str
    alert_after_s: float
    push_alert_share: float
    views: list[ViewFreshness] = field(default_factory=list)
    run_dir: str | None = None
    seconds: float | None = None
    workspace_run: str | None = None
    workspace_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for view in data["views"]:
            for key in ("age_s", "sla_s", "ttl_s"):
                if view[key] is not None and not math.isfinite(view[key]):
                    view[key] = None  # JSON has no infinity; "lag unbounded" is in the detail
        return data


def duration(seconds: float | None) -> str:
    """A short human duration ("26h", "-19h 30m", "4m 10s"); "∞" for an unbounded lag."""
    if seconds is None:
        return "–"
    if math.isinf(seconds):
        return "∞"
    sign, s = ("-" if seconds < 0 else ""), abs(seconds)
    days, rest = divmod(round(s), 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{sign}{days}d {hours}h"
    if hours:
        return f"{sign}{hours}h {minutes}m" if minutes else f"{sign}{hours}h"
    return f"{sign}{minutes}m {secs}s" if minutes else f"{sign}{secs}s"


def age_text(seconds: float | None) -> str:
    """An age or lag as people read it: "15h 24m", or "ahead of the clock by 15h 24m" for a
    view materialised past the clock (a negative age is not an age)."""
    if seconds is not None and seconds < 0:
        return f"ahead of the clock by {duration(-seconds)}"
    return duration(seconds)


def parse_sla(value: str | None) -> float | None:
    """A ``freshness_sla`` tag ("26h", "10min") in seconds; None when absent."""
    if not value:
        return None
    return pd.Timedelta(value).total_seconds()


def judge_batch(view: ViewState, clock: pd.Timestamp, alert_after_s: float) -> ViewFreshness:
    until = view.materialized_until
    result = ViewFreshness(
        view=view.name,
        kind=view.kind,
        status="ok",
        detail="",
        sla_s=view.sla_s,
        ttl_s=view.ttl_s,
        materialized_until=None if until is None else until.isoformat(),
        age_s=None,
    )
    if until is None:
        result.status = "alert"
        result.detail = "never materialised: the online store has none of its values"
        return result
    age = (clock - until).total_seconds()
    result.age_s = age
    if view.ttl_s is not None and age >= view.ttl_s:
        result.status = "alert"
        result.detail = (
            f"materialised {duration(age)} ago, past its TTL of {duration(view.ttl_s)}:"
            " Feast serves nulls for it"
        )
    elif view.sla_s is not None and age > view.sla_s + alert_after_s:
        result.status = "alert"
        result.detail = (
            f"materialised {duration(age)} before the clock; SLA {duration(view.sla_s)}"
            f" (+{duration(alert_after_s)} before alerting): materialisation has stopped"
        )
    elif view.sla_s is not None and age > view.sla_s:
        result.status = "warn"
        result.detail = (
            f"materialised {duration(age)} before the clock; SLA {duration(view.sla_s)}:"
            " the last materialisation is late"
        )
    else:
        when = (
            f"materialised up to {duration(age)} before the clock"
            if age >= 0
            else f"materialised {duration(-age)} ahead of the clock"
        )
        sla = (
            "no freshness_sla tag: judged against its TTL only"
            if view.sla_s is None
            else f"SLA {duration(view.sla_s)}"
        )
        result.detail = f"{when} ({sla})"
    return result


def judge_push(
    view: ViewState, probe: PushProbe | None, clock: pd.Timestamp, alert_share: float
) -> ViewFreshness:
    until = view.materialized_until
    result = ViewFreshness(
        view=view.name,
        kind=view.kind,
        status="insufficient_data",
        detail="",
        sla_s=view.sla_s,
        ttl_s=view.ttl_s,
        materialized_until=None if until is None else until.isoformat(),
        age_s=None,
    )
    if probe is None or probe.users == 0:
        result.detail = "no recent production request to read back: nothing pushed to check"
        return result
    sla = view.sla_s or 0.0
    lagging = {u: lag for u, lag in probe.lags_s.items() if lag > sla}
    result.probed_users = probe.users
    result.lagging_users = len(lagging)
    result.age_s = max(probe.lags_s.values())
    worst = sorted(lagging.items(), key=lambda item: -item[1])[:N_EXAMPLES]
    result.examples = [
        {"user_id": u, "lag_s": None if math.isinf(lag) else lag} for u, lag in worst
    ]
    share = len(lagging) / probe.users
    if not lagging:
        result.status = "ok"
        result.detail = (
            f"the pushes of all {probe.users} recently scored users are online"
            f" (largest lag {duration(result.age_s)}, SLA {duration(view.sla_s)})"
        )
    else:
        result.status = "alert" if share >= alert_share else "warn"
        result.detail = (
            f"{len(lagging)} of {probe.users} recently scored users ({share:.0%}) have an online"
            f" velocity state older than their last scored transaction by more than"
            f" {duration(view.sla_s)} (largest {duration(result.age_s)})"
            + (": pushes are not reaching the online store" if result.status == "alert" else "")
        )
    return result


def compute_freshness(
    views: list[ViewState],
    clock: pd.Timestamp,
    probe: PushProbe | None,
    *,
    alert_after_s: float,
    push_alert_share: float,
) -> FreshnessResult:
    """Judge every view at ``clock``; no I/O."""
    clock = pd.Timestamp(clock)
    judged = [
        judge_push(v, probe, clock, push_alert_share)
        if v.kind == PUSH
        else judge_batch(v, clock, alert_after_s)
        for v in views
    ]
    verdicts = [v.status for v in judged if v.status != "insufficient_data"]
    status: Status = max(verdicts, key=lambda s: _RANK[s]) if verdicts else "insufficient_data"
    return FreshnessResult(status, clock.isoformat(), alert_after_s, push_alert_share, judged)


def _code_tags() -> dict[str, dict[str, str]]:
    """Each view's tags as ``features/definitions.py`` declares them now."""
    from features.definitions import ALL_OBJECTS

    return {o.name: dict(o.tags) for o in ALL_OBJECTS if hasattr(o, "ttl")}


def view_states(store: FeatureStore) -> list[ViewState]:
    """Every feature view in the registry, its SLA, TTL and materialisation end."""
    code = _code_tags()
    states = []
    for fv in sorted(store.list_feature_views(), key=lambda v: v.name):
        tags = {**code.get(fv.name, {}), **dict(fv.tags)}
        ends = [end for _, end in fv.materialization_intervals]
        ttl = fv.ttl.total_seconds() if fv.ttl else None
        states.append(
            ViewState(
                name=fv.name,
                kind=tags.get(KIND_TAG, "batch"),
                ttl_s=ttl or None,  # a zero TTL means "never expires" in Feast
                sla_s=parse_sla(tags.get(SLA_TAG)),
                materialized_until=pd.Timestamp(max(ends)).tz_convert(UTC) if ends else None,
            )
        )
    return states


def probe_push(
    store: FeatureStore, view: str, records: list[PredictionRecord], sample: int
) -> PushProbe:
    """Read back the online ``last_txn_ts`` of the users of the newest pushed requests."""
    cutoff = datetime.now(UTC) - timedelta(seconds=PUSH_GRACE_S)
    settled = [r for r in records if datetime.fromisoformat(r.logged_at) <= cutoff]
    scored_ts: dict[int, float] = {}
    for r in settled[-sample:]:
        user = int(r.user_id)
        scored_ts[user] = max(scored_ts.get(user, -math.inf), r.event_ts)
    if not scored_ts:
        return PushProbe(0, {})
    users = list(scored_ts)
    online = store.get_online_features(
        features=[f"{view}:{PUSH_TS_FEATURE}"],
        entity_rows=[{"user_id": u} for u in users],
    ).to_dict()
    online_ts = dict(zip(online["user_id"], online[PUSH_TS_FEATURE], strict=True))
    return PushProbe.from_states(scored_ts, online_ts)


def render_html(result: FreshnessResult) -> str:
    colours = {"ok": "#dfd", "warn": "#ffd", "alert": "#fdd", "insufficient_data": "#eef"}
    rows = []
    for v in result.views:
        probed = "" if v.probed_users is None else f"{v.lagging_users} / {v.probed_users}"
        rows.append(
            f"<tr style='background:{colours[v.status]}'><td>{html.escape(v.view)}</td>"
            f"<td>{v.kind}</td><td>{v.status}</td><td>{age_text(v.age_s)}</td>"
            f"<td>{duration(v.sla_s)}</td><td>{duration(v.ttl_s)}</td>"
            f"<td>{html.escape(v.materialized_until or '–')}</td><td>{probed}</td>"
            f"<td>{html.escape(v.detail)}</td></tr>"
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>fraudlab freshness</title>"
        "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:4px}"
        "table{border-collapse:collapse}</style></head><body>"
        f"<h1>Feature freshness: {html.escape(result.status)}</h1>"
        f"<p>At the stack's clock {html.escape(result.clock)}. Batch views: age = clock − end of"
        " the latest materialisation (registry). Push view: lag of the online velocity state"
        " behind recently scored transactions (read back through Feast). A view alerts"
        f" {duration(result.alert_after_s)} past its SLA; the push view when"
        f" {result.push_alert_share:.0%} of probed users lag.</p>"
        "<table><tr><th>view</th><th>kind</th><th>status</th><th>age / lag</th><th>SLA</th>"
        "<th>TTL</th><th>materialised until</th><th>lagging users</th><th>detail</th></tr>"
        + "".join(rows)
        + "</table></body></html>"
    )


def workspace_values(result: FreshnessResult) -> dict[str, float | None]:
    """The numbers charted over runs in the workspace's "freshness" tab (hours, simulated)."""
    values: dict[str, float | None] = {}
    for v in result.views:
        if v.kind == PUSH:
            values["push_lag_hours"] = None if v.age_s is None else v.age_s / 3600.0
            values["push_lagging_users"] = v.lagging_users
            values["push_probed_users"] = v.probed_users
        else:
            values[f"age_hours_{v.view}"] = None if v.age_s is None else v.age_s / 3600.0
    return values


def workspace_panels(result: FreshnessResult) -> list:
    from monitoring import workspace
    from monitoring.gauges import series

    batch = [v.view for v in result.views if v.kind != PUSH]
    return [
        workspace.line_panel(
            "Online feature age per view (simulated hours)",
            [series(f"age_hours_{view}", view) for view in batch],
            description="clock minus the end of the view's latest materialisation; below zero:"
            " materialised ahead of the clock (user_profile is loaded a day ahead)",
        ),
        workspace.line_panel(
            "Velocity pushes: recently scored users whose state is not online",
            [series("push_lagging_users", "lagging"), series("push_probed_users", "probed")],
        ),
    ]


def run_freshness(settings: Settings, run_dir: Path | None = None) -> FreshnessResult:
    """Judge every feature view's online freshness at the stack's clock."""
    from features.store import open_store
    from pipelines.data import read_clock

    started = time.perf_counter()
    run_dir = run_dir or sources.new_run_dir(settings)
    clock = read_clock(settings)
    store = open_store(settings)
    views = view_states(store)
    probe = None
    push_views = [v.name for v in views if v.kind == PUSH]
    if push_views:
        # newest production records that pushed (fallbacks never saw the state, synthetic
        # requests never push); twice the sample, so the grace period cannot empty it
        records = sources.read_recent(
            settings.prediction_log_dir, 2 * settings.freshness_push_sample
        )
        probe = probe_push(store, push_views[0], records, settings.freshness_push_sample)
    result = compute_freshness(
        views,
        clock,
        probe,
        alert_after_s=settings.freshness_alert_after_hours * 3600.0,
        push_alert_share=settings.freshness_push_alert_share,
    )
    result.run_dir = str(run_dir)
    result.workspace_run, result.workspace_error = gauges.record(
        settings,
        monitor="freshness",
        name=f"freshness {run_dir.name}",
        values=workspace_values(result),
        checks={v.view: v.status for v in result.views},
        check_noun="feature views",
        panels=workspace_panels(result),
        metadata={"clock": result.clock, "status": result.status},
    )
    result.seconds = round(time.perf_counter() - started, 2)
    (run_dir / "freshness.html").write_text(render_html(result))
    (run_dir / "freshness.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return result
