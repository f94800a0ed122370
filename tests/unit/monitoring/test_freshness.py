"""Freshness: a batch view not materialised for two simulated days alerts, a fresh one is ok,
a late one warns; a view past its TTL alerts; serving's pushes read back: all online is ok, a
lost push warns, stopped pushes alert; every feature view declares an SLA."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from monitoring import freshness
from monitoring.freshness import PushProbe, ViewState, compute_freshness

HOUR = 3600.0
DAY = 24 * HOUR
ALERT_AFTER = 12 * HOUR
MIDNIGHT = pd.Timestamp("2026-04-05T00:00:00Z")


def daily(materialized_until: pd.Timestamp | None, ttl_s: float | None = 400 * DAY) -> ViewState:
    return ViewState("user_stats", "batch", ttl_s, 26 * HOUR, materialized_until)


def velocity() -> ViewState:
    return ViewState("user_velocity", "push", 400 * DAY, 600.0, MIDNIGHT)


def judge(views, clock, probe=None):
    return compute_freshness(
        views, pd.Timestamp(clock), probe, alert_after_s=ALERT_AFTER, push_alert_share=0.5
    )


def only(result):
    (view,) = result.views
    return view


def test_a_view_materialised_at_the_last_midnight_is_ok() -> None:
    result = judge([daily(MIDNIGHT)], MIDNIGHT + pd.Timedelta(hours=23))
    assert result.status == "ok"
    assert only(result).age_s == 23 * HOUR


def test_a_view_not_materialised_for_two_days_alerts() -> None:
    result = judge([daily(MIDNIGHT)], MIDNIGHT + pd.Timedelta(days=2))
    assert result.status == "alert"
    assert "stopped" in only(result).detail


def test_a_stopped_materialisation_warns_then_alerts_within_a_simulated_day() -> None:
    """Last run at midnight D; the run at D+1 never happens."""
    statuses = {
        hours: only(judge([daily(MIDNIGHT)], MIDNIGHT + pd.Timedelta(hours=hours))).status
        for hours in (20, 25, 27, 37, 39)
    }
    assert statuses == {20: "ok", 25: "ok", 27: "warn", 37: "warn", 39: "alert"}


def test_a_view_past_its_ttl_alerts_even_without_an_sla() -> None:
    view = ViewState("user_stats", "batch", 2 * DAY, None, MIDNIGHT)
    assert only(judge([view], MIDNIGHT + pd.Timedelta(days=1))).status == "ok"
    late = only(judge([view], MIDNIGHT + pd.Timedelta(days=2)))
    assert late.status == "alert" and "TTL" in late.detail


def test_a_view_never_materialised_alerts() -> None:
    assert only(judge([daily(None)], MIDNIGHT)).status == "alert"


def test_a_view_loaded_ahead_of_the_clock_is_fresh() -> None:
    profile = ViewState(
        "user_profile", "batch", 3650 * DAY, 2 * HOUR, MIDNIGHT + pd.Timedelta(days=1)
    )
    view = only(judge([profile], MIDNIGHT + pd.Timedelta(hours=5)))
    assert view.status == "ok" and view.age_s == -19 * HOUR


def probe(lags: list[float]) -> PushProbe:
    scored = {user: 1_775_000_000.0 for user in range(len(lags))}
    online = {
        user: None if math.isinf(lag) else 1_775_000_000.0 - lag for user, lag in enumerate(lags)
    }
    return PushProbe.from_states(scored, online)


def test_pushes_all_online_are_ok() -> None:
    view = only(judge([velocity()], MIDNIGHT, probe([0.0] * 50)))
    assert view.status == "ok" and view.lagging_users == 0 and view.probed_users == 50


def test_online_state_newer_than_the_scored_transaction_is_not_a_lag() -> None:
    result = PushProbe.from_states({1: 100.0}, {1: 250.0})
    assert result.lags_s == {1: 0.0}


def test_a_lost_push_warns() -> None:
    view = only(judge([velocity()], MIDNIGHT, probe([0.0] * 49 + [3 * HOUR])))
    assert view.status == "warn"
    assert view.lagging_users == 1 and view.age_s == 3 * HOUR
    assert view.examples == [{"user_id": 49, "lag_s": 3 * HOUR}]


def test_stopped_pushes_alert() -> None:
    lags = [5 * HOUR] * 30 + [math.inf] * 10 + [0.0] * 10
    view = only(judge([velocity()], MIDNIGHT, probe(lags)))
    assert view.status == "alert"
    assert view.lagging_users == 40 and math.isinf(view.age_s)
    assert "not reaching" in view.detail


def test_no_recent_traffic_gives_the_push_view_no_verdict_and_does_not_mask_the_rest() -> None:
    result = judge([velocity(), daily(MIDNIGHT)], MIDNIGHT + pd.Timedelta(hours=1))
    by_name = {v.view: v for v in result.views}
    assert by_name["user_velocity"].status == "insufficient_data"
    assert result.status == "ok"
    stale = judge([velocity(), daily(MIDNIGHT)], MIDNIGHT + pd.Timedelta(days=3))
    assert stale.status == "alert"


def test_the_summary_is_valid_json_with_an_unbounded_lag() -> None:
    result = judge([velocity()], MIDNIGHT, probe([math.inf]))
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["views"][0]["age_s"] is None and data["status"] == "alert"
    assert "user_velocity" in freshness.render_html(result)


@pytest.mark.parametrize(
    ("text", "seconds"), [("26h", 26 * HOUR), ("10min", 600.0), ("2h", 2 * HOUR), (None, None)]
)
def test_sla_tags_parse(text, seconds) -> None:
    assert freshness.parse_sla(text) == seconds


def test_every_view_serving_reads_declares_a_freshness_sla_and_a_kind() -> None:
    """A view without an SLA is judged against its TTL only (400 days): staleness unseen."""
    from features.definitions import OBJECTS_BY_NAME
    from foundation.settings import Settings

    service = OBJECTS_BY_NAME[Settings(_env_file=None).feature_service]
    served = {projection.name for projection in service.feature_view_projections}
    tags = freshness._code_tags()
    assert {"user_stats", "user_profile", "user_velocity"} <= served
    for name in served:
        assert freshness.parse_sla(tags[name].get(freshness.SLA_TAG)), name
        assert tags[name].get(freshness.KIND_TAG) in ("batch", "push"), name
    assert tags["user_velocity"][freshness.KIND_TAG] == "push"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(93_600, "1d 2h"), (-19 * HOUR - 1800, "-19h 30m"), (250, "4m 10s"), (math.inf, "∞")],
)
def test_durations_read_like_a_person_writes_them(seconds, text) -> None:
    assert freshness.duration(seconds) == text


def test_a_view_ahead_of_the_clock_never_reads_as_a_negative_age() -> None:
    """`make monitor` printed `user_profile | batch | -15h 24m | ok`: say what is true."""
    from rich.console import Console

    from monitoring.run import print_freshness

    profile = ViewState(
        "user_profile", "batch", 3650 * DAY, 2 * HOUR, MIDNIGHT + pd.Timedelta(days=1)
    )
    result = judge([profile, daily(MIDNIGHT)], MIDNIGHT + pd.Timedelta(hours=8, minutes=36))
    result.seconds = 0.1
    console = Console(record=True, width=200)
    print_freshness(console, result)
    printed = console.export_text()
    page = freshness.render_html(result)
    for text in (printed, page):
        assert "ahead of the clock by 15h 24m" in text
        assert "-15h" not in text and "8h 36m" in text
    assert freshness.age_text(-19 * HOUR) == "ahead of the clock by 19h"
    assert freshness.age_text(3 * HOUR) == "3h" and freshness.age_text(None) == "–"
