"""The containerised stack's host side: .env generation and the compose file's contract."""

from __future__ import annotations

import re
import stat

import yaml

from control import compose
from foundation.settings import REPO_ROOT

COMPOSE_YAML = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


def test_env_gets_every_variable_with_generated_secrets_readable_by_its_owner_only(
    tmp_path,
) -> None:
    env_file = tmp_path / ".env"
    added = compose.ensure_env(env_file)
    assert added == [v.name for v in compose.COMPOSE_VARIABLES]
    values = compose.read_env(env_file)
    secrets = [v.name for v in compose.COMPOSE_VARIABLES if v.secret]
    assert all(len(values[name]) >= 32 for name in secrets)
    assert len({values[name] for name in secrets}) == len(secrets)  # no shared password
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert compose.ensure_env(env_file) == []  # idempotent


def test_env_never_changes_a_value_already_there(tmp_path) -> None:
    """PostgreSQL keeps the passwords its volume was initialised with."""
    env_file = tmp_path / ".env"
    env_file.write_text("FRAUDLAB_N_USERS=3000\nPOSTGRES_PASSWORD=kept\n")
    added = compose.ensure_env(env_file)
    assert "POSTGRES_PASSWORD" not in added and "REDIS_PASSWORD" in added
    values = compose.read_env(env_file)
    assert values["POSTGRES_PASSWORD"] == "kept" and values["FRAUDLAB_N_USERS"] == "3000"


def test_every_variable_the_compose_file_needs_is_generated_or_defaulted() -> None:
    lines = (REPO_ROOT / "docker-compose.yml").read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    required = set(re.findall(r"\$\{(\w+):\?", text))
    generated = {v.name for v in compose.COMPOSE_VARIABLES if v.secret}
    assert required and required <= generated


def test_every_published_port_is_bound_to_loopback() -> None:
    ports = [
        (name, port)
        for name, service in COMPOSE_YAML["services"].items()
        for port in service.get("ports", [])
    ]
    assert ports
    assert all(str(port).startswith("127.0.0.1:") for _, port in ports), ports


def test_every_long_running_service_has_a_healthcheck_and_one_shots_none() -> None:
    for name, service in COMPOSE_YAML["services"].items():
        if service.get("restart") == "no":
            assert "healthcheck" not in service, name
        else:
            assert "healthcheck" in service, f"{name} has no healthcheck"


def test_the_images_never_get_scenarios_notes_or_state() -> None:
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    for pattern in ("broken_scenarios", "var", ".git", ".env", "**/INTERVIEWER*", ".venv"):
        assert pattern in ignored
