"""One typed settings object for every fraudlab process.

Owns: reading configuration from the environment (``FRAUDLAB_*`` variables, or a ``.env``
file in the working directory), the stack's live overrides (``<home>/overrides.env``, written
by ``fraudlab config set``), and deriving the paths and URLs every component agrees on.
Must not: import heavy libraries or touch the disk beyond resolving paths, because every
process (serving, pipelines, DAG tasks, the CLI) imports it first.

The embedded stack and the containerised stack differ only in these values.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, SecretStr, TypeAdapter, computed_field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
OVERRIDES_FILE = "overrides.env"
PREFIX = "FRAUDLAB_"


def read_overrides(home: Path) -> dict[str, str]:
    """``<home>/overrides.env`` as field name → raw value (comments and blanks skipped)."""
    from dotenv import dotenv_values

    path = Path(home).resolve() / OVERRIDES_FILE
    if not path.exists():
        return {}
    return {
        key[len(PREFIX) :].lower(): value
        for key, value in dotenv_values(path).items()
        if key.startswith(PREFIX) and value is not None
    }


class _StackOverrides(PydanticBaseSettingsSource):
    """The live overrides of the stack at ``home`` (found through the other sources).

    They rank just below values passed to the constructor: above the process environment, so
    a change reaches every process of the stack that starts after it, whatever environment its
    parent handed down (``Settings.environment`` leaves overridden fields out for that reason).
    """

    def __init__(self, settings_cls: type[BaseSettings], *home_sources) -> None:
        super().__init__(settings_cls)
        self.home_sources = home_sources

    def get_field_value(self, field, field_name):  # pragma: no cover - __call__ does the work
        return None, field_name, False

    def __call__(self) -> dict[str, object]:
        home = next(
            (found["home"] for source in self.home_sources if "home" in (found := source())),
            self.settings_cls.model_fields["home"].default,
        )
        fields = self.settings_cls.model_fields
        return {k: v for k, v in read_overrides(Path(home)).items() if k in fields and k != "home"}


class Settings(BaseSettings):
    """Every tunable of the stack. Each field maps to ``FRAUDLAB_<FIELD>`` (upper case).

    Precedence: constructor arguments, then the stack's live overrides
    (``<home>/overrides.env``), then ``FRAUDLAB_*`` environment variables, then ``.env``, then
    the defaults below.
    """

    model_config = SettingsConfigDict(
        env_prefix="FRAUDLAB_", env_file=".env", extra="ignore", frozen=True
    )
    _overridden: frozenset[str] = PrivateAttr(default=frozenset())

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        overrides = _StackOverrides(settings_cls, init_settings, env_settings, dotenv_settings)
        return init_settings, overrides, env_settings, dotenv_settings, file_secret_settings

    def model_post_init(self, context: object, /) -> None:
        # Which fields the overrides file decided (a constructor argument beats it).
        overridden = set()
        for name, raw in read_overrides(self.home).items():
            field = type(self).model_fields.get(name)
            if field is None or name == "home":
                continue
            try:
                value = TypeAdapter(field.annotation).validate_python(raw)
            except ValueError:
                continue
            if value == getattr(self, name):
                overridden.add(name)
        self._overridden = frozenset(overridden)

    @property
    def overridden(self) -> frozenset[str]:
        """Fields whose value came from ``<home>/overrides.env`` when these settings were read."""
        return self._overridden

    def environment(self) -> dict[str, str]:
        """``FRAUDLAB_*`` variables that give a child process these settings.

        Every field is passed (a child may run elsewhere, where this ``.env`` is not found),
        except secrets and the overridden ones: the child reads the overrides file itself, so it sees the
        stack's configuration as it is when it starts, not as it was when its parent started.
        Structured values travel as JSON.
        """
        env = {}
        for name, value in self.model_dump(mode="json").items():
            if value is None or name in self._overridden:
                continue
            if isinstance(getattr(self, name), SecretStr):
                continue  # secrets are not handed down (a dump would pass "**********")
            text = json.dumps(value) if isinstance(value, dict | list) else str(value)
            env[f"{PREFIX}{name.upper()}"] = text
        env[f"{PREFIX}HOME"] = str(self.home.resolve())
        return env

    def reloaded(self) -> Settings:
        """These settings read again: constructor values kept, overrides and environment anew
        (after ``fraudlab config set`` or a scenario reset changed ``<home>/overrides.env``)."""
        given = {
            name: getattr(self, name)
            for name in self.model_fields_set
            if name not in self._overridden
        }
        return type(self)(**given)

    # --- where state lives -------------------------------------------------------------
    home: Path = Field(
        default=REPO_ROOT / "var",
        description="Root of all generated state: data, feature store, MLflow, logs, pids.",
    )

    # --- synthetic data ------------------------------------------------------------------
    seed: int = Field(default=7, description="Seed of the synthetic data generator.")
    n_users: int = Field(default=10_000, description="Number of card holders.")
    n_merchants: int = Field(default=1_500, description="Number of merchants.")
    history_days: int = Field(
        default=90, description="Days of history before 'now' (training data comes from here)."
    )
    future_days: int = Field(
        default=42,
        description="Days after 'now' that the traffic simulator replays (at 5 req/s a"
        " simulated day takes ~11 minutes: 42 days last a working day).",
    )
    fraud_rate: float = Field(
        default=1 / 200, description="Share of transactions that are fraud (1/200 to 1/1000)."
    )
    txns_per_user_day: float = Field(
        default=0.35, description="Mean legitimate transactions per user per day."
    )
    start_date: str = Field(default="2026-01-01", description="First day of history (UTC).")

    # --- model and registry -----------------------------------------------------------------
    model_name: str = Field(default="fraud-detector", description="Registered model name.")
    feature_service: str = Field(
        default="fraud_model_v1", description="Feast FeatureService the model is trained on."
    )
    experiment: str = Field(default="fraud-detection", description="MLflow experiment.")
    false_decline_cost: float = Field(
        default=5.0, description="Cost of declining a legitimate transaction (friction, $)."
    )
    label_maturity_days: int = Field(
        default=21, description="Days after which a transaction's label is taken as final."
    )
    train_threads: int = Field(default=1, description="LightGBM threads while training.")
    train_lgbm_params: dict[str, float | int | str | bool] = Field(
        default={},
        description='LightGBM parameters overriding the defaults, as JSON, e.g. {"num_leaves": 7}.',
    )
    train_num_boost_round: int = Field(
        default=400,
        description="Most boosting rounds (early stopping on validation may stop first).",
    )

    # --- servers (all bound to loopback by default) -------------------------------------
    bind_host: str = Field(default="127.0.0.1", description="Address every server binds.")
    mlflow_port: int = Field(default=5050, description="MLflow tracking server port.")
    mlflow_tracking_uri: str | None = Field(
        default=None, description="Override the tracking URI (default: local server)."
    )
    serving_port: int = Field(default=3000, description="BentoML serving port.")
    serving_url: str | None = Field(
        default=None, description="Override the URL clients use to reach serving."
    )
    evidently_port: int = Field(
        default=8085,
        description="Evidently UI port: the monitoring workspace over time (compose publishes it).",
    )
    evidently_url: str | None = Field(
        default=None, description="Override the Evidently UI's URL (default: local server)."
    )
    airflow_port: int = Field(
        default=8080,
        description="Airflow API server and UI port (`make airflow-ui`; compose publishes it).",
    )

    # --- containerised stack (docker-compose.yml sets these inside its containers) ------
    stack: Literal["embedded", "compose"] = Field(
        default="embedded",
        description="Which stack make/the CLI drive: local processes (embedded) or"
        " docker-compose.yml (compose).",
    )
    compose_project: str = Field(
        default="fraudlab", description="docker compose project name of the containerised stack."
    )
    compose_env_file: Path = Field(
        default=REPO_ROOT / ".env",
        description="The containerised stack's .env: compose's variables, generated credentials.",
    )
    feast_registry_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of a SQL Feast registry (containerised: PostgreSQL);"
        " default: a file registry under the home.",
    )
    feast_redis: str | None = Field(
        default=None,
        description="Redis for Feast's online store, host:port[,password=...] (containerised);"
        " default: SQLite under the home.",
    )
    redis_timeout_s: float = Field(
        default=1.0,
        description="Socket timeout of Feast's Redis connections (never retried: serving falls"
        " back instead).",
    )
    git_commit: str | None = Field(
        default=None,
        description="Commit of the code where there is no git checkout (images set it when built).",
    )
    in_container: bool = Field(
        default=False,
        description="Set by docker-compose.yml in its containers: this process runs inside the"
        " containerised stack and acts on its services directly (URLs, the release pointer),"
        " never through the compose CLI, which only the host has.",
    )
    docker_socket: Path = Field(
        default=Path("/var/run/docker.sock"),
        description="Docker Engine API socket through which the containerised lab runner stops,"
        " starts and restarts the stack's services.",
    )

    # --- serving behaviour ----------------------------------------------------------------
    ort_threads: int = Field(default=1, description="onnxruntime intra-op threads.")
    release_id: str | None = Field(
        default=None,
        description="The serving release a serving process runs, logged with every prediction"
        " (set by whoever starts serving on a release; unset: not known).",
    )
    ort_inter_op_threads: int = Field(
        default=1,
        ge=1,
        description="onnxruntime inter-op threads; above 1 the graph's independent nodes run in"
        " parallel (ORT_PARALLEL), 1 runs them in sequence.",
    )
    feature_timeout_ms: float = Field(
        default=25.0, description="Online feature lookup budget before the fallback is used."
    )
    reload_interval_s: float = Field(
        default=10.0, description="How often serving checks whether the champion alias moved."
    )
    latency_budget_ms: float = Field(default=10.0, description="Serving p99 budget (ms).")
    max_amount: float = Field(
        default=50_000.0, description="Largest transaction amount serving accepts."
    )

    # --- traffic -------------------------------------------------------------------------
    traffic_rps: float = Field(default=5.0, description="Simulator requests per second.")
    loadtest_rps: float = Field(default=100.0, description="`make loadtest` request rate.")
    loadtest_seconds: int = Field(default=30, description="`make loadtest` duration.")

    # --- monitoring --------------------------------------------------------------------
    psi_warn: float = Field(
        default=0.1, description="PSI at or above which a feature's drift is a warning."
    )
    psi_alert: float = Field(
        default=0.2, description="PSI at or above which a feature's drift is an alert."
    )
    monitor_window_hours: float = Field(
        default=24.0,
        description=(
            "Event-time span of the drift window. Traffic has a daily cycle (who buys, where,"
            " what): a window of part of a day differs from any training sample, so drift is"
            " judged only on a window this long."
        ),
    )
    monitor_window: int = Field(
        default=10_000,
        description="Most predictions the drift monitor judges (a longer window is thinned evenly).",
    )
    workspace_keep_runs: int = Field(
        default=300,
        description="Monitoring runs kept in the Evidently workspace (older ones are deleted:"
        " the UI holds every run in memory).",
    )
    psi_bins: int = Field(
        default=10,
        description="PSI bins: quantiles of the training reference (columns with few values: one"
        " bin per value).",
    )
    psi_binning: Literal["reference", "pooled"] = Field(
        default="reference",
        description="Where PSI bins of a continuous column lie: 'reference' (quantiles of the"
        " training sample) or 'pooled' (equal-width over reference and window together, as"
        " Evidently's built-in psi bins; monitoring.drift says which to use when).",
    )
    monitor_min_records: int = Field(
        default=500, description="Fewer predictions than this in the window: no drift verdict."
    )
    monitor_current_release_only: bool = Field(
        default=True,
        description="Drift, skew and request quality judge only what the serving release"
        " running now scored (false: the whole window, whichever release scored it).",
    )
    skew_sample: int = Field(
        default=500, description="Most recent predictions the skew monitor recomputes offline."
    )
    perf_window_days: float = Field(
        default=30.0,
        description="Event-time days of logged decisions the performance monitor joins to labels.",
    )
    perf_min_completeness: float = Field(
        default=0.6,
        description="Expected label completeness (share of eventual chargebacks arrived at a"
        " transaction's age) from which performance is judged.",
    )
    perf_min_positives: int = Field(
        default=20,
        description="Fewer known frauds than this in the judged part: no performance verdict.",
    )
    perf_label_horizon_days: float = Field(
        default=45.0,
        description="Longest chargeback delay counted when estimating label completeness.",
    )
    perf_recall_warn_drop: float = Field(
        default=0.10, description="Live recall this far below the champion's test recall warns."
    )
    perf_recall_alert_drop: float = Field(
        default=0.20, description="Live recall this far below the champion's test recall alerts."
    )
    perf_pr_auc_warn_drop: float = Field(
        default=0.10, description="Live PR-AUC this far below the champion's test PR-AUC warns."
    )
    perf_pr_auc_alert_drop: float = Field(
        default=0.20, description="Live PR-AUC this far below the champion's test PR-AUC alerts."
    )
    freshness_alert_after_hours: float = Field(
        default=12.0,
        description="Simulated hours past its freshness SLA (tag freshness_sla) before a feature"
        " view's warning becomes an alert.",
    )
    freshness_push_sample: int = Field(
        default=200,
        description="Recent scored requests whose velocity push the freshness monitor reads back.",
    )
    freshness_push_alert_share: float = Field(
        default=0.5,
        description="Share of recently scored users whose pushed velocity is missing online from"
        " which the push view alerts (any: warn).",
    )
    latency_min_records: int = Field(
        default=100,
        description="Fewer timed requests than this in the monitors' window: no p99 verdict"
        " (production and load tests are counted, and judged, apart).",
    )
    latency_warn_ratio: float = Field(
        default=0.8,
        description="p99 above this share of the latency budget warns (above it: alert).",
    )
    fallback_rate_warn: float = Field(
        default=0.01,
        description="Share of feature-store fallbacks among the requests of the latency"
        " monitor's window that warns.",
    )
    decisions_decline_warn_ratio: float = Field(
        default=2.0,
        gt=1.0,
        description="Live decline rate this many times the champion's test decline rate, or"
        " below it by the same factor, warns (healthy days measured ×0.56 to ×1.57).",
    )
    decisions_decline_alert_ratio: float = Field(
        default=3.0,
        gt=1.0,
        description="Live decline rate this many times the champion's test decline rate, or"
        " below it by the same factor, alerts.",
    )
    decisions_min_frauds: int = Field(
        default=20,
        description="Chargebacks among matured decisions needed before the fraud rate and the"
        " live threshold's cost are judged.",
    )
    decisions_fraud_rate_warn_ratio: float = Field(
        default=1.5,
        gt=1.0,
        description="Matured fraud rate this many times the training window's, or below it by"
        " the same factor, warns.",
    )
    decisions_fraud_rate_alert_ratio: float = Field(
        default=2.0,
        gt=1.0,
        description="Matured fraud rate this many times the training window's, or below it by"
        " the same factor, alerts.",
    )
    decisions_savings_warn: float = Field(
        default=0.6,
        description="Warn when the live threshold keeps less than this share of the savings"
        " (vs declining nothing) the threshold optimal in hindsight gets on the champion's"
        " matured decisions (healthy measured 0.73 to 1.0).",
    )
    decisions_savings_alert: float = Field(
        default=0.3,
        description="Alert when the live threshold keeps less than this share of the savings"
        " the threshold optimal in hindsight gets on the champion's matured decisions.",
    )
    fallback_rate_alert: float = Field(
        default=0.05,
        description="Share of answers that were feature-store fallbacks (any one reason) in the"
        " requests monitor's window, or fallback decisions in the decisions monitor's, that"
        " alerts (warns from fallback_rate_warn).",
    )
    rejection_rate_warn: float = Field(
        default=0.005,
        description="Share of requests refused for one reason (e.g. unknown_user) in the"
        " requests monitor's window that warns (the champion's evaluation had none).",
    )
    rejection_rate_alert: float = Field(
        default=0.02, description="Share of requests refused for one reason that alerts."
    )
    coverage_sample: int = Field(
        default=200,
        description="Entities per batch feature view the requests monitor samples from the"
        " offline table and looks up in the online store.",
    )
    coverage_warn: float = Field(
        default=0.99,
        description="Online-store coverage of a view's sampled entities below which the"
        " requests monitor warns.",
    )
    coverage_alert: float = Field(
        default=0.9, description="Online-store coverage below which the requests monitor alerts."
    )

    # --- promotion gates ---------------------------------------------------------------------
    gate_holdout_days: int = Field(
        default=7, description="Days of matured labels in the promotion holdout (latest ones)."
    )
    gate_pr_auc_tolerance: float = Field(
        default=0.01, description="Largest PR-AUC drop vs the champion the quality gate allows."
    )
    gate_cost_tolerance: float = Field(
        default=0.02, description="Largest relative expected-cost rise vs the champion allowed."
    )
    gate_brier_tolerance: float = Field(
        default=0.5,
        description="Largest relative Brier-score rise vs the champion the calibration gate"
        " allows (healthy retrains measured ×0.54 to ×1.27; a week's few frauds move it, the"
        " calibration error carries the calibration verdict).",
    )
    gate_calibration_tolerance: float = Field(
        default=0.15,
        description="Rise in expected calibration error vs the champion the calibration gate"
        " allows, as a share of the holdout's fraud rate (or gate_calibration_ratio, whichever"
        " allows more; healthy retrains measured up to 0.13, +1.5 logits 0.12 to 1.4).",
    )
    gate_calibration_ratio: float = Field(
        default=3.0,
        description="Expected calibration error up to this multiple of the champion's passes"
        " the calibration gate whatever the tolerance (healthy retrains measured up to ×2.8;"
        " +1.5 logits ×1.6 to ×21).",
    )
    gate_decline_rate_band: float = Field(
        default=2.5,
        gt=1.0,
        description="The challenger's decline rate at its threshold must lie within this factor,"
        " either way, of the champion's on the holdout or on its own test split (healthy"
        " retrains measured ×0.57 to ×1.75; a leak-perfect model ×0.51).",
    )
    gate_slice_tolerance: float = Field(
        default=0.05, description="Largest PR-AUC drop in any slice vs the champion allowed."
    )
    gate_slice_min_positives: int = Field(
        default=10, description="Frauds a slice needs before its PR-AUC can fail the gate."
    )
    gate_latency_p99_us: float = Field(
        default=2_000.0, description="Single-row ONNX p99 budget for a challenger (µs)."
    )
    gate_max_feature_auc: float = Field(
        default=0.98, description="Univariate AUC at which one feature is treated as a leak."
    )

    # --- scenario lab ---------------------------------------------------------------------
    lab_repo: Path | None = Field(
        default=None,
        description="Git checkout the scenario lab works in: its broken_scenarios/ catalogue "
        "and code-review branches (default: this project's checkout).",
    )
    lab_dir: Path | None = Field(
        default=None,
        description="Where the scenario lab keeps its encrypted state, baseline snapshot, cache"
        " and scratch space (default: <home>/lab). The containerised stack points it at a volume"
        " the candidate's workstation does not mount.",
    )
    lab_catalogue: Path | None = Field(
        default=None,
        description="The scenario catalogue (default: broken_scenarios/ of the lab repository)."
        " The containerised lab runner reads the interviewer's checkout, mounted read-only.",
    )
    lab_passphrase: SecretStr | None = Field(
        default=None,
        description="Passphrase for seal/unseal and interviewer verbs while sealed; prompted "
        "for when unset (set it only for automation and tests).",
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"http://{self.bind_host}:{self.mlflow_port}"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def serving_base_url(self) -> str:
        return self.serving_url or f"http://{self.bind_host}:{self.serving_port}"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def evidently_base_url(self) -> str:
        return self.evidently_url or f"http://{self.bind_host}:{self.evidently_port}"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def airflow_base_url(self) -> str:
        return f"http://{self.bind_host}:{self.airflow_port}"

    # Paths are derived, never configured one by one: one root, one layout.
    @property
    def data_dir(self) -> Path:
        return self.home.resolve() / "data"

    @property
    def feature_data_dir(self) -> Path:
        return self.home.resolve() / "features"

    @property
    def feast_registry(self) -> Path:
        return self.home.resolve() / "feast" / "registry.db"

    @property
    def feast_online_path(self) -> Path:
        return self.home.resolve() / "feast" / "online.db"

    @property
    def mlflow_dir(self) -> Path:
        return self.home.resolve() / "mlflow"

    @property
    def log_dir(self) -> Path:
        return self.home.resolve() / "logs"

    @property
    def run_dir(self) -> Path:
        return self.home.resolve() / "run"

    @property
    def prediction_log_dir(self) -> Path:
        return self.home.resolve() / "predictions"

    @property
    def label_dir(self) -> Path:
        return self.home.resolve() / "labels"

    @property
    def serving_cache_dir(self) -> Path:
        return self.home.resolve() / "serving-cache"

    @property
    def monitoring_dir(self) -> Path:
        return self.home.resolve() / "monitoring"

    @property
    def gates_dir(self) -> Path:
        return self.home.resolve() / "gates"

    @property
    def training_dir(self) -> Path:
        return self.home.resolve() / "training"

    @property
    def lab_state_dir(self) -> Path:
        return (self.lab_dir or self.home / "lab").resolve()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once)."""
    return Settings()
