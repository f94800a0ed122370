"""Live overrides: validated before anything is written, read by every process that starts
after them (above its environment), and listed with where each setting comes from."""

from __future__ import annotations

import pytest

from control import config
from foundation.settings import Settings
from tests.conftest import small_settings


def test_an_override_beats_the_environment_of_processes_started_after_it(
    tmp_path, monkeypatch
) -> None:
    settings = small_settings(tmp_path)
    monkeypatch.setenv("FRAUDLAB_HOME", str(tmp_path))
    monkeypatch.setenv("FRAUDLAB_PSI_ALERT", "0.3")  # what a parent process handed down
    config.set_overrides(settings, config.parse_assignments(["FRAUDLAB_PSI_ALERT=0.5"]))
    child = Settings(_env_file=None)
    assert child.psi_alert == 0.5 and child.overridden == {"psi_alert"}
    assert "FRAUDLAB_PSI_ALERT" not in child.environment()  # its own children read the file
    assert config.unset_overrides(settings, ["psi_alert"]) == ["psi_alert"]
    assert not config.overrides_path(settings).exists()
    assert Settings(_env_file=None).psi_alert == 0.3


def test_nothing_is_written_when_one_override_is_wrong(tmp_path) -> None:
    settings = small_settings(tmp_path)
    with pytest.raises(config.ConfigError, match="psi_bins='many'"):
        config.set_overrides(settings, {"psi_alert": "0.5", "psi_bins": "many"})
    with pytest.raises(config.ConfigError, match="not a setting"):
        config.parse_assignments(["no_such_thing=1"])
    with pytest.raises(config.ConfigError, match="NAME=VALUE"):
        config.parse_assignments(["psi_alert"])
    with pytest.raises(config.ConfigError, match="not a setting"):
        config.set_overrides(settings, {"home": "/elsewhere"})  # a stack cannot move itself
    assert not config.overrides_path(settings).exists()


def test_effective_settings_say_where_each_value_comes_from(tmp_path) -> None:
    settings = small_settings(tmp_path)
    config.set_overrides(settings, {"ort_threads": "4"})
    rows = {row.name: row for row in config.effective(settings.reloaded())}
    assert (rows["ort_threads"].value, rows["ort_threads"].source) == (4, "override")
    assert rows["n_users"].source == "environment"  # given to the constructor
    assert rows["psi_bins"].source == "default"
    # a constructor argument beats an override (tests pin what they need)
    pinned = small_settings(tmp_path, ort_threads=1)
    assert pinned.ort_threads == 1 and "ort_threads" not in pinned.overridden
