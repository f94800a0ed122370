"""Configuration: every setting is documented, and the environment drives it."""

from __future__ import annotations

import subprocess
import sys

from foundation.settings import REPO_ROOT, Settings


def test_env_example_documents_every_setting() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / ".ci" / "env_example.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = (REPO_ROOT / ".env.example").read_text()
    for name in Settings.model_fields:
        assert f"FRAUDLAB_{name.upper()}" in text, name


def test_environment_variables_configure_the_stack(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("FRAUDLAB_HOME", str(tmp_path))
    monkeypatch.setenv("FRAUDLAB_SERVING_PORT", "3999")
    monkeypatch.setenv("FRAUDLAB_FRAUD_RATE", "0.001")
    settings = Settings(_env_file=None)
    assert settings.serving_base_url == "http://127.0.0.1:3999"
    assert settings.fraud_rate == 0.001
    assert settings.prediction_log_dir == tmp_path.resolve() / "predictions"
