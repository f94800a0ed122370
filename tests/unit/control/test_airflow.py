"""The Airflow environment: isolated under the fraudlab home, the repo's DAGs, FRAUDLAB_* kept."""

from __future__ import annotations

import json

import pytest

from control.airflow import DAGS_FOLDER, airflow_environment, airflow_home
from foundation.settings import REPO_ROOT
from tests.conftest import small_settings


def test_airflow_lives_under_the_fraudlab_home_with_sqlite_and_the_repo_dags(tmp_path):
    settings = small_settings(tmp_path / "home")
    env = airflow_environment(settings, base={"PATH": "/usr/bin"})
    assert airflow_home(settings) == (tmp_path / "home").resolve() / "airflow"
    assert env["AIRFLOW_HOME"] == str(airflow_home(settings))
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == (
        f"sqlite:///{airflow_home(settings) / 'airflow.db'}"
    )
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(DAGS_FOLDER)
    assert DAGS_FOLDER == REPO_ROOT / "dags"
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__CORE__PARALLELISM"] == "4"
    assert env["PATH"] == "/usr/bin"


def test_the_settings_object_reaches_the_tasks_and_overrides_stay_live(tmp_path):
    settings = small_settings(tmp_path / "home", mlflow_port=5999)
    base = {"FRAUDLAB_MLFLOW_PORT": "1234", "FRAUDLAB_HOME": "/elsewhere", "PYTHONPATH": "/x"}
    env = airflow_environment(settings, base=base)
    # the settings object this process was given decides, over what its environment said
    assert env["FRAUDLAB_MLFLOW_PORT"] == "5999"
    assert env["FRAUDLAB_HOME"] == str((tmp_path / "home").resolve())
    assert env["PYTHONPATH"].split(":") == [str(REPO_ROOT), "/x"]
    # fields set on the settings object (here the small world) reach the tasks too
    assert env["FRAUDLAB_N_USERS"] == str(settings.n_users) != "20000"
    # a live override is read by each task itself, not frozen into its environment
    (tmp_path / "home").mkdir(exist_ok=True)
    (tmp_path / "home" / "overrides.env").write_text("FRAUDLAB_PSI_BINS=50\n")
    overridden = settings.reloaded()
    assert overridden.psi_bins == 50 and "psi_bins" in overridden.overridden
    assert "FRAUDLAB_PSI_BINS" not in airflow_environment(overridden, base={})


def test_structured_settings_reach_the_tasks_as_values_they_parse_back(tmp_path):
    from foundation.settings import Settings

    settings = small_settings(
        tmp_path / "home", train_lgbm_params={"num_leaves": 4, "feature_fraction": 0.2}
    )
    env = airflow_environment(settings, base={})
    assert json.loads(env["FRAUDLAB_TRAIN_LGBM_PARAMS"]) == {
        "num_leaves": 4,
        "feature_fraction": 0.2,
    }
    fraudlab_env = {k: v for k, v in env.items() if k.startswith("FRAUDLAB_")}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in fraudlab_env.items():
            patch.setenv(key, value)
        task_side = Settings(_env_file=None)
    assert task_side.train_lgbm_params == settings.train_lgbm_params
    assert task_side.n_users == settings.n_users and task_side.home == settings.home.resolve()
