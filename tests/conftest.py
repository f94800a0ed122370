"""Shared test helpers: a small, isolated fraudlab home for tests that need real data."""

from __future__ import annotations

import socket

import pytest

from foundation.settings import Settings
from model.record import PredictionRecord

# Small enough to build in seconds, large enough for a model to learn the patterns.
SMALL_WORLD = {
    "n_users": 3000,
    "n_merchants": 300,
    "history_days": 75,
    "future_days": 5,
    "fraud_rate": 1 / 100,
}


def prediction_record(**fields) -> PredictionRecord:
    """A prediction-log record for tests: ``fields`` as given, every other field a plain
    default (an approved, non-fallback production request scored by version 1)."""
    defaults = {
        "request_id": "r0",
        "transaction_id": "t0",
        "logged_at": "2026-03-01T00:00:00+00:00",
        "event_ts": 1_772_323_200.0,
        "user_id": 1,
        "merchant_id": 1,
        "device_id": 1,
        "request": {"amount": 10.0, "channel": "web", "ip_region": "EU"},
        "features": {},
        "model_inputs": {},
        "score": 0.01,
        "decision": "approve",
        "threshold": 0.5,
        "model_version": "1",
        "fallback": False,
        "fallback_reason": None,
        "synthetic": False,
        "latency_ms": None,
        "release": None,
    }
    return PredictionRecord(**{**defaults, **fields})


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def small_settings(home, **overrides) -> Settings:
    return Settings(_env_file=None, home=home, **{**SMALL_WORLD, **overrides})


@pytest.fixture(scope="session")
def small_world_home(tmp_path_factory):
    return tmp_path_factory.mktemp("fraudlab-small")
