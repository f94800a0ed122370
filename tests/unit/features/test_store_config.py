"""One feature_store.yaml, two stacks: the settings decide the registry and the online store."""

from __future__ import annotations

import pytest

from features.store import FEATURE_REPO, feast_environment
from foundation.settings import Settings


def load_config(settings: Settings, monkeypatch: pytest.MonkeyPatch):
    """The RepoConfig Feast builds from feature_store.yaml in this environment."""
    from feast.repo_config import load_repo_config

    for key, value in feast_environment(settings).items():
        monkeypatch.setenv(key, value)
    return load_repo_config(FEATURE_REPO, FEATURE_REPO / "feature_store.yaml")


def test_embedded_stack_keeps_a_file_registry_and_sqlite(tmp_path, monkeypatch) -> None:
    settings = Settings(_env_file=None, home=tmp_path)
    config = load_config(settings, monkeypatch)
    assert config.online_store.type == "sqlite"
    assert config.online_store.path == str(settings.feast_online_path)
    assert config.registry.registry_type == "file"
    assert config.registry.path == str(settings.feast_registry)
    assert config.registry.cache_ttl_seconds == 0


def test_containerised_stack_uses_postgres_registry_and_redis_that_fails_fast(
    tmp_path, monkeypatch
) -> None:
    url = "postgresql+psycopg://feast:p%40ss@postgres:5432/feast"
    settings = Settings(
        _env_file=None,
        home=tmp_path,
        feast_registry_url=url,
        feast_redis="redis:6379,password=s3cret,db=0",
        redis_timeout_s=0.5,
    )
    config = load_config(settings, monkeypatch)
    assert config.registry.registry_type == "sql"
    assert config.registry.path == url
    # refreshed in the background, never on the request path
    assert config.registry.cache_mode == "thread" and config.registry.cache_ttl_seconds > 0
    assert config.online_store.type == "redis"

    from feast.infra.online_stores.redis import RedisOnlineStore

    nodes, kwargs = RedisOnlineStore._parse_connection_string(
        config.online_store.connection_string
    )
    assert nodes == [{"host": "redis", "port": "6379"}]
    # no retries with back-off (seconds per request while Redis is down), a short timeout,
    # and the configured options kept
    assert kwargs["retry"] is None
    assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == 0.5
    assert kwargs["password"] == "s3cret" and kwargs["db"] == 0


def test_a_down_redis_fails_a_read_at_once(tmp_path, monkeypatch) -> None:
    """What serving's fallback relies on: an unreachable Redis raises within the timeout."""
    import time

    from feast.infra.online_stores.redis import RedisOnlineStore

    from tests.conftest import free_port

    settings = Settings(
        _env_file=None, home=tmp_path, feast_redis=f"127.0.0.1:{free_port()}", redis_timeout_s=0.2
    )
    config = load_config(settings, monkeypatch)
    store = RedisOnlineStore()
    client = store._get_client(config.online_store)
    started = time.perf_counter()
    with pytest.raises(Exception, match="(?i)connect"):
        client.ping()
    assert time.perf_counter() - started < 1.0


def test_serving_bounds_redis_waits_by_its_lookup_budget(tmp_path, monkeypatch) -> None:
    """The request path's store gives up on a silent Redis within the lookup budget; batch jobs
    keep the configured timeout."""
    from feast.infra.online_stores.redis import RedisOnlineStore

    settings = Settings(_env_file=None, home=tmp_path, feast_redis="redis:6379", redis_timeout_s=1)

    def timeouts(wait_s):
        for key, value in feast_environment(settings, wait_s).items():
            monkeypatch.setenv(key, value)
        from feast.repo_config import load_repo_config

        config = load_repo_config(FEATURE_REPO, FEATURE_REPO / "feature_store.yaml")
        _, kwargs = RedisOnlineStore._parse_connection_string(
            config.online_store.connection_string
        )
        return kwargs["socket_timeout"], kwargs["socket_connect_timeout"]

    assert timeouts(0.025) == (0.025, 0.025)
    assert timeouts(None) == (1, 1)
