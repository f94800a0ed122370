"""Shared test helpers: a small, isolated fraudlab home for tests that need real data."""

from __future__ import annotations

import socket

import pytest

from foundation.settings import Settings

# Small enough to build in seconds, large enough for a model to learn the patterns.
SMALL_WORLD = {
    "n_users": 3000,
    "n_merchants": 300,
    "history_days": 75,
    "future_days": 5,
    "fraud_rate": 1 / 100,
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def small_settings(home, **overrides) -> Settings:
    return Settings(_env_file=None, home=home, **{**SMALL_WORLD, **overrides})


@pytest.fixture(scope="session")
def small_world_home(tmp_path_factory):
    return tmp_path_factory.mktemp("fraudlab-small")
