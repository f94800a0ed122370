"""What a scenario's functions receive: ``ScenarioContext``, and what verify returns: ``Check``.

Owns: the small, stable surface a scenario is written against — the stack's settings, the
seeded variant, scenario-private data (persisted encrypted by the engine), quiet helpers to run
commands, git and the ``fraudlab`` CLI, and to check and restart the stack. Every method that
touches a process means the same in both stacks: embedded, it acts on the local processes
(``control.stack``); containerised (``settings.stack == "compose"``, the lab runner inside
the stack), on the service containers through the Docker Engine API (``control.containers``)
and on serving through its release supervisor (``control.serve``).

Also owns the seams a scenario reaches the rest of the stack through: the clock, the raw world
and its feature tables, the prediction log, the registry's champion and the models a scenario
registers, the promotion gates, the monitors' judgements and the schedules. Each is a thin call
into the package that owns it, so a refactor below ``lab`` changes this module, never a
scenario (``tests/scenarios/test_scenario_imports.py`` holds scenarios to this surface and the
short list of public contracts ``broken_scenarios/AUTHORING.md`` names).

Must not: print to the candidate (everything a scenario prints is captured by the engine and
kept, encrypted, for the interviewer), or know about any particular scenario.
"""

from __future__ import annotations

import io
import json
import random
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from foundation.settings import REPO_ROOT, Settings
from lab.manifest import Variant

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from bench.load import Result
    from model.record import PredictionRecord
    from model.registry import ModelBundle
    from monitoring.drift import DriftResult
    from monitoring.freshness import FreshnessResult, ViewFreshness
    from pipelines.gates import GateResult

DEFAULT_TIMEOUT_S = 120.0


class Level(StrEnum):
    """How far a candidate got, in order (AIOpsLab grades these apart): the fault was seen,
    found, repaired, and kept from coming back (a test, a monitor, a gate, a resumed job)."""

    DETECTED = "detected"
    LOCALISED = "localised"
    FIXED = "fixed"
    PREVENTED = "prevented"


@dataclass(frozen=True)
class Check:
    """One verdict of ``verify`` (or of a steady-state or symptom probe).

    ``description`` is shown to the candidate next to OK/NO: say what is judged in neutral
    words, never the cause. ``detail`` is for the interviewer (``verify --explain``) and tests.
    ``level`` (optional, a ``Level`` or its name) says which level of the work the check
    judges; a verify that tags any check is summarised by the level reached, and its untagged
    checks count as ``fixed``.
    """

    description: str
    ok: bool
    detail: str = ""
    level: Level | None = None

    def __post_init__(self) -> None:
        if self.level is not None and not isinstance(self.level, Level):
            try:
                object.__setattr__(self, "level", Level(self.level))
            except ValueError:
                names = ", ".join(level.value for level in Level)
                raise ValueError(f"Check level {self.level!r}: use one of {names}") from None


@dataclass(frozen=True)
class LevelCount:
    level: Level
    passed: int
    total: int


@dataclass(frozen=True)
class LevelSummary:
    """Verify by level: ``reached`` is the highest level whose checks, and those of every level
    below it, all pass (None: not even the lowest one tagged)."""

    reached: Level | None
    counts: list[LevelCount]

    def describe(self) -> str:
        """E.g. ``reached: fixed; prevented: 0 of 1 checks pass``."""
        reached = f"reached: {self.reached.value if self.reached else 'none yet'}"
        pending = next((c for c in self.counts if c.passed < c.total), None)
        if pending is None:
            return reached
        return f"{reached}; {pending.level.value}: {pending.passed} of {pending.total} checks pass"


def summarise_levels(checks: Sequence[Check]) -> LevelSummary | None:
    """The level ``checks`` reach; None when no check is tagged with a level."""
    if not any(check.level is not None for check in checks):
        return None
    counts = []
    for level in Level:
        judged = [check for check in checks if (check.level or Level.FIXED) == level]
        if judged:
            counts.append(LevelCount(level, sum(check.ok for check in judged), len(judged)))
    reached = None
    for count in counts:
        if count.passed < count.total:
            break
        reached = count.level
    return LevelSummary(reached, counts)


def edit_once(text: str, old: str, new: str, path: str) -> str:
    """``text`` with its one occurrence of ``old`` replaced by ``new``, for a scenario's edit of
    a repository file (``path``, named in the error). Anything but exactly one occurrence means
    the file changed under the scenario: fail loudly rather than ship a release without the
    fault, or with it twice."""
    if text.count(old) != 1:
        raise RuntimeError(
            f"{path} changed: the scenario's edit no longer applies (looked for {old[:60]!r})"
        )
    return text.replace(old, new)


class CommandFailed(RuntimeError):
    """A command a scenario ran exited non-zero; the message carries its output."""


class ScenarioContext:
    """Everything a scenario function may use. Created by the engine for each verb.

    Attributes:
        settings: the stack's settings (ports, home, thresholds) — the same object the CLI uses.
        scenario_id: the manifest id (for the scenario's own bookkeeping; never print it).
        seed: the seed the interviewer gave (or the engine drew).
        variant: the seeded variant: ``ctx.variant["feature"]``, ``ctx.variant.note("feature")``.
        repo: the git checkout the lab works in (catalogue, code-review branches).
        private: scenario-private JSON data. Whatever ``inject`` stores here is saved encrypted
            with the state and handed back to ``verify`` and ``reset`` (e.g. a branch name, the
            champion version before the fault, a backup's path).
        rng: a ``random.Random`` seeded by scenario and seed, for cosmetic choices that must
            be reproducible (a branch name, an author) but are not part of the variant.
    """

    def __init__(
        self,
        settings: Settings,
        scenario_id: str,
        seed: int,
        variant: Variant,
        repo: Path,
        private: dict[str, Any],
        resources: Callable[[str], bytes],
    ):
        self.settings = settings
        self.scenario_id = scenario_id
        self.seed = seed
        self.variant = variant
        self.repo = repo
        self.private = private
        self._resources = resources
        self.rng = random.Random(f"{scenario_id}:{seed}")

    # --- files ---------------------------------------------------------------------------------

    def resource(self, name: str) -> bytes:
        """A file of the scenario's own folder, plain even while the catalogue is sealed."""
        return self._resources(name)

    @property
    def work_dir(self) -> Path:
        """Scratch space under the lab directory's ``work/`` (neutral name), deleted after
        ``reset``. Put backups and temporary checkouts here, never in the repository."""
        path = self.settings.lab_state_dir / "work"
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    # --- commands ----------------------------------------------------------------------------

    def run(
        self,
        command: Sequence[str | Path],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command with its output captured (never shown to the candidate).

        ``env`` replaces the environment when given (start from ``self.env()``). With
        ``check`` a non-zero exit raises ``CommandFailed`` carrying stdout and stderr. The
        command never reads the interviewer's terminal (stdin is empty unless ``input`` is
        given): a prompt fails instead of hanging, and the interview record, which notes only
        commands run at a terminal, does not count the scenario's own.
        """
        result = subprocess.run(
            [str(part) for part in command],
            cwd=cwd or self.repo,
            env=dict(env) if env is not None else None,
            input=input,
            stdin=subprocess.DEVNULL if input is None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise CommandFailed(
                f"{' '.join(map(str, command))} exited {result.returncode}\n"
                f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
            )
        return result

    def git(
        self,
        *args: str,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``git <args>`` in the lab repository; ``env`` adds to (not replaces) the environment."""
        import os

        full_env = {**os.environ, **(env or {})}
        # The lab's git work never runs the repository's hooks: in the containerised stack the
        # repository is the candidate's, and the lab runner must not execute what they put there.
        return self.run(
            ["git", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", *args],
            cwd=cwd or self.repo,
            env=full_env,
            input=input,
            check=check,
        )

    def env(self) -> dict[str, str]:
        """The environment a process of this stack gets: every setting as ``FRAUDLAB_*``."""
        from control import launch

        return launch.child_environment(self.settings)

    def fraudlab(
        self, *args: str, timeout: float = 600.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the project's CLI (``fraudlab <args>``) against this stack, output captured:
        e.g. ``ctx.fraudlab("monitor", "drift")`` or ``ctx.fraudlab("promote", check=False)``."""
        return self.run(
            [sys.executable, "-m", "fraudlab.cli", *args],
            cwd=REPO_ROOT,
            env=self.env(),
            timeout=timeout,
            check=check,
        )

    # --- the stack ---------------------------------------------------------------------------

    def stack_healthy(self) -> bool:
        """MLflow answers and serving is ready (the quiet core of ``fraudlab status``)."""
        from control import launch

        return launch.mlflow_healthy(self.settings) and launch.serving_ready(self.settings)

    @property
    def _containerised(self) -> bool:
        return self.settings.stack == "compose"

    def restart_serving(self, **overrides: Any) -> None:
        """Stop the serving process and start it again, optionally with settings overridden for
        the new process only (``ctx.restart_serving(ort_threads=8)``); waits until it is ready.
        ``reset`` calls it without overrides to restore the baseline (containerised: the
        container restarts, and its new process has no overrides)."""
        from control import stack

        if self._containerised:
            from control import containers, serve

            if not overrides:
                containers.restart_serving(self.settings)
                return
            target = self.settings.reloaded().model_copy(update=overrides)
            variables = target.environment()
            names = {f"FRAUDLAB_{name.upper()}" for name in overrides}
            serve.restart(self.settings, {k: v for k, v in variables.items() if k in names})
            return
        if self.settings.serving_url:
            raise RuntimeError(
                "serving is external (FRAUDLAB_SERVING_URL is set): restart it where it runs"
            )
        fresh = self.settings.reloaded()  # live overrides written since this process started
        target = fresh.model_copy(update=overrides) if overrides else fresh
        stack._stop(self.settings, "serving")
        if not stack._start_serving(target):
            raise RuntimeError("serving did not become ready after the restart")

    def serving_started_at(self) -> float | None:
        """When the serving process that answers now started (epoch seconds; None when no
        serving process is known): records logged since then are that process's."""
        if self._containerised:
            from control import serve

            found = serve.status(self.settings)
            return float(found["started_at"]) if found else None
        from control import stack

        record = stack.running(self.settings, "serving")
        return record.started_at if record else None

    # --- incidents: what the running system is made of ---------------------------------------

    def set_config(self, **values: Any) -> None:
        """Write live overrides (``fraudlab config set``): every process of the stack started
        from now on reads them; restart the ones that must pick them up now."""
        from control import config

        config.set_overrides(self.settings, {k: str(v) for k, v in values.items()})

    def unset_config(self, *names: str) -> None:
        from control import config

        config.unset_overrides(self.settings, names)

    def deploy(self, changes: Mapping[str, str] | None = None) -> str:
        """Deploy a serving release built from the working tree with ``changes`` (repository
        path → new file text) on top, and restart serving on it; returns the release id. With
        no changes: the working tree as it is (what ``fraudlab deploy`` does)."""
        from control import releases

        release = (
            releases.build(self.settings, REPO_ROOT, changes)
            if changes
            else releases.find_or_build(self.settings, REPO_ROOT)
        )
        if self._containerised:
            from control import serve

            serve.deploy(self.settings, release)  # serving's supervisor follows the pointer
            return release.id
        releases.set_current(self.settings, release)
        self.restart_serving()
        return release.id

    def traffic_running(self) -> bool:
        if self._containerised:
            from control import containers

            return containers.traffic_running(self.settings)
        from control import stack

        return stack.running(self.settings, "traffic") is not None

    def stop_traffic(self) -> bool:
        """Stop the paced simulator; True if it was running."""
        if self._containerised:
            from control import containers

            return containers.stop(self.settings, "traffic")
        from control import stack

        was = self.traffic_running()
        stack._stop(self.settings, "traffic")
        return was

    def start_traffic(self) -> None:
        if self._containerised:
            from control import containers

            containers.start_traffic(self.settings)
            return
        from control import stack

        if not stack._start_traffic(self.settings.reloaded()):
            raise RuntimeError("the traffic simulator did not start")

    def fast_forward(self, hours: float, workers: int = 4, timeout_s: float = 600.0) -> None:
        """Replay ``hours`` of simulated time as fast as serving answers (the paced simulator
        is paused meanwhile), so that monitors have the traffic a symptom needs. Containerised,
        the replay runs in the lab runner itself, against serving's service address."""
        was_running = self.stop_traffic()
        try:
            self.fraudlab(
                "simulate",
                "--fast-forward-hours",
                str(hours),
                "--workers",
                str(workers),
                timeout=timeout_s,
            )
        finally:
            if was_running:
                self.start_traffic()

    def cache_dir(self, name: str) -> Path:
        """A directory that survives resets, for expensive things a scenario builds once (a
        model it registers at inject). The name on disk is a hash: it never names anything."""
        import hashlib

        digest = hashlib.sha256(f"{self.scenario_id}:{name}".encode()).hexdigest()[:16]
        path = self.settings.lab_state_dir / "cache" / digest
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    def keep_run(self, run_directory: Path, archive: Path, *, skip: Collection[str] = ()) -> None:
        """Keep a training run directory as an archive at ``archive`` (in a ``cache_dir``),
        leaving out files named in ``skip`` (a training set the run no longer needs). The
        archive is a gzipped tar, hex-encoded: the lab directory must not hold bytes that happen
        to read as anything (the hidden-state checks scan it as text), and hex spells no word.
        Written whole or not at all: an interrupted write leaves no archive."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for path in sorted(run_directory.rglob("*")):
                if path.is_file() and path.name not in skip:
                    tar.add(path, arcname=str(path.relative_to(run_directory.parent)))
        partial = archive.with_name(archive.name + ".partial")
        partial.write_text(buffer.getvalue().hex())
        partial.replace(archive)

    def unpack_run(self, archive: Path, name: str = "unpacked") -> Path:
        """The run directory kept by ``keep_run``, unpacked afresh under ``work_dir / name``."""
        target = self.work_dir / name
        shutil.rmtree(target, ignore_errors=True)
        data = io.BytesIO(bytes.fromhex(archive.read_text()))
        with tarfile.open(fileobj=data, mode="r:gz") as tar:
            tar.extractall(target, filter="data")
        (run_directory,) = [p for p in target.iterdir() if p.is_dir()]
        return run_directory

    # --- models: what a scenario registers, and what it leaves behind ------------------------

    def remember_history(self) -> None:
        """Note the gate reports and the moment before the break, so that ``forget_history``
        (at reset) removes exactly what was written after it: the next candidate must not find
        this one's models and reports. The baseline restore keeps neither."""
        self.private["reports_before"] = sorted(
            p.name for p in self.settings.gates_dir.glob("*") if (p / "gates.json").exists()
        )
        self.private["started_ms"] = int(time.time() * 1000)

    def forget_history(self) -> None:
        """Delete gate reports and MLflow runs written since ``remember_history``."""
        if "started_ms" not in self.private:
            return
        before = set(self.private.get("reports_before", []))
        for path in self.settings.gates_dir.glob("*"):
            if (path / "gates.json").exists() and path.name not in before:
                shutil.rmtree(path, ignore_errors=True)
        from model.registry import client

        mlflow = client(self.settings)
        experiment = mlflow.get_experiment_by_name(self.settings.experiment)
        if experiment is None:
            return
        for run in mlflow.search_runs(
            [experiment.experiment_id], f"attributes.start_time >= {self.private['started_ms']}"
        ):
            mlflow.delete_run(run.info.run_id)

    def serving_follows(self, version: str, timeout_s: float = 90.0) -> None:
        """Ask serving to check the champion alias now (it would within its reload interval
        anyway) until it serves ``version``."""
        import httpx

        def serving_runs_it() -> bool:
            try:
                httpx.post(f"{self.settings.serving_base_url}/reload", json={}, timeout=30)
            except httpx.HTTPError:
                return False
            return self.served_model_version() == version

        self.wait_for(serving_runs_it, timeout_s, f"serving to run v{version}")

    # --- the code the stack runs -----------------------------------------------------------

    def read_stack_code(self, path: str) -> str:
        """The text of ``path`` (repository-relative) in the code the stack runs — the base a
        serving release edit (``edit_once``, ``deploy``) is written against. Containerised, the
        lab runner's image holds the same code as serving's."""
        return (REPO_ROOT / path).read_text()

    # --- the world: clock, raw data, feature tables, online store ----------------------------

    def clock(self) -> pd.Timestamp:
        """The stack's simulated present (``pipelines.data.read_clock``)."""
        from pipelines.data import read_clock

        return read_clock(self.settings)

    def world_meta(self) -> dict[str, Any]:
        """The generated world's metadata (``meta.json``: ``transactions_hash``, ``start``,
        ``now`` ...); ``transactions_hash`` keys anything cached per world."""
        from pipelines.data import read_meta

        return read_meta(self.settings)

    def read_raw(self, name: str) -> pd.DataFrame:
        """A raw table of the world: ``"transactions"``, ``"merchants"`` or ``"users"``."""
        from pipelines.data import read_raw

        return read_raw(self.settings, name)

    def write_raw(self, name: str, frame: pd.DataFrame) -> None:
        """Replace a raw table of the world (where ``read_raw`` reads it). The feature tables
        and the online store still hold the old world: ``rebuild_feature_tables`` and
        ``rematerialise``; stop the paced simulator first, it holds what it replays in memory."""
        frame.to_parquet(self.settings.data_dir / f"{name}.parquet", index=False)

    def data_hash(self, frame: pd.DataFrame) -> str:
        """The content hash training records as a data version (``pipelines.data.frame_hash``)."""
        from pipelines.data import frame_hash

        return frame_hash(frame)

    @property
    def feature_tables_version(self) -> int:
        """The layout version of the offline feature tables: part of the key of a model cached
        per world (a model trained on another layout must be trained again)."""
        from pipelines.feature_tables import FEATURE_TABLES_VERSION

        return FEATURE_TABLES_VERSION

    @property
    def training_warmup_days(self) -> int:
        """Days at the start of the history no training window includes (feature warm-up)."""
        from pipelines.training import WARMUP_DAYS

        return WARMUP_DAYS

    def category_amounts(self) -> tuple[np.ndarray, np.ndarray]:
        """The world generator's amount model: per merchant category (in the order of
        ``features.vocabulary.MERCHANT_CATEGORIES``) the mean and sigma of log(amount)."""
        from pipelines.generate import CATEGORY_LOG_MEAN, CATEGORY_LOG_SIGMA

        return CATEGORY_LOG_MEAN, CATEGORY_LOG_SIGMA

    def rebuild_feature_tables(self) -> dict[str, int]:
        """Rebuild the offline feature tables from the raw tables (rows per table)."""
        from pipelines.data import build_feature_tables

        return build_feature_tables(self.settings)

    def rematerialise(self, since: pd.Timestamp) -> list[str]:
        """Load the batch feature views (not the ones written as an entity is created) into the
        online store from ``since`` to the clock, after the definitions are applied; returns the
        views loaded."""
        from features.store import CREATED_WITH_ENTITY, apply_definitions, open_store

        store = open_store(self.settings)
        apply_definitions(store, self.settings)
        views = [
            fv.name
            for fv in store.list_feature_views()
            if dict(fv.tags).get("kind", "batch") == "batch" and fv.name not in CREATED_WITH_ENTITY
        ]
        store.materialize(
            start_date=since.to_pydatetime(),
            end_date=self.clock().to_pydatetime(),
            feature_views=views,
        )
        return views

    # --- serving: what it answers, synthetic requests ----------------------------------------

    def served_model_version(self) -> str | None:
        """The model version serving reports on ``/metrics`` (None when it does not answer);
        no request lands in the prediction log."""
        from control import stack

        return stack.served_model_version(self.settings)

    def reload_serving(self, version: str) -> None:
        """``POST /reload`` once, as the retrain DAG's last task does; fails unless serving then
        runs ``version`` (``serving_follows`` polls instead)."""
        from pipelines import tasks

        tasks.reload_serving(self.settings, version)

    def write_synthetic_requests(self, path: Path, n: int) -> int:
        """Write ``n`` request bodies (JSON lines, ``synthetic: true``: logged, left out of the
        monitors, never a card holder's velocity) sampled from upcoming transactions of users
        the online store knows — what ``make loadtest`` sends; returns how many were written."""
        from traffic.loadtest import write_payloads

        return write_payloads(self.settings, path, n=n)

    def score_open_loop(self, bodies: list[bytes], rps: float, seconds: float) -> Result:
        """POST ``bodies`` to serving's ``/score`` at ``rps`` for ``seconds``, open loop (the
        pace does not wait for answers); ``bench.load.Result``: ``n``, ``errors``,
        ``pct_ms(q)``."""
        from bench import load

        return load.open_loop(self.settings.serving_base_url, "/score", bodies, rps, seconds)

    def score_closed_loop(self, bodies: list[bytes], concurrency: int, seconds: float) -> Result:
        """POST ``bodies`` to ``/score`` back to back from ``concurrency`` clients for
        ``seconds`` (to warm connections and caches); a ``bench.load.Result``."""
        from bench import load

        return load.closed_loop(
            self.settings.serving_base_url, "/score", bodies, concurrency, seconds
        )

    # --- the prediction log ------------------------------------------------------------------

    def prediction_log(
        self,
        *,
        logged_since: datetime | None = None,
        include_fallback: bool = False,
        include_synthetic: bool = False,
    ) -> Iterator[PredictionRecord]:
        """Prediction records logged (wall clock) since ``logged_since``, newest first; the
        whole log when None. Fallback and synthetic records only when asked for
        (``monitoring.sources.iter_log``)."""
        from monitoring import sources

        return sources.iter_log(
            self.settings.prediction_log_dir,
            logged_since=logged_since,
            include_fallback=include_fallback,
            include_synthetic=include_synthetic,
        )

    def prediction_window(
        self, hours: float, *, log_dir: Path | None = None, min_span_hours: float = 0.0
    ) -> list[PredictionRecord]:
        """Production records within ``hours`` of event time of the newest, oldest first — the
        window the drift monitor reads (``monitoring.sources.read_window``) — from the stack's
        log or from ``log_dir``; empty when they span less than ``min_span_hours``."""
        from monitoring import sources

        window = sources.read_window(log_dir or self.settings.prediction_log_dir, hours)
        return window if sources.span_hours(window) >= min_span_hours else []

    # --- the registry: the champion and the models a scenario registers ----------------------

    def registry_client(self) -> Any:
        """MLflow's client on the stack's registry, for MLflow's own API (a version's run id,
        tags and creation time, a run's metrics and artifacts) under ``settings.model_name``."""
        from model.registry import client

        return client(self.settings)

    def champion(self) -> tuple[str, str] | None:
        """(version, run id) the ``champion`` alias points at; None without one."""
        from model.registry import CHAMPION, resolve_alias

        return resolve_alias(self.settings, CHAMPION)

    def model_bundle(self, version: str, run_id: str | None = None) -> ModelBundle:
        """A registered version's bundle (ONNX graph, spec, evaluation), downloaded once into
        ``work_dir``; ``run_id`` (as recorded at inject) finds it even when the version itself
        is gone, else the registry is asked for it."""
        from model.registry import client, download_bundle

        if run_id is None:
            found = client(self.settings).get_model_version(self.settings.model_name, version)
            run_id = found.run_id
        return download_bundle(self.settings, version, run_id, self.work_dir / "bundles")

    def champion_bundle(self) -> ModelBundle | None:
        """The champion's bundle (``model_bundle``); None without a champion."""
        found = self.champion()
        return None if found is None else self.model_bundle(*found)

    def register_run(self, run_directory: Path, *, champion: bool = False) -> str:
        """Register a training run directory (one ``unpack_run`` gave back) as a new version
        the way ``fraudlab train`` does, and point ``challenger`` — or with ``champion``, the
        champion alias, bypassing the gates — at it; returns the version. A run is registered
        afresh: a note of an earlier registration in the directory is dropped first."""
        from model.registry import CHALLENGER, CHAMPION
        from pipelines import training

        (Path(run_directory) / training.REGISTERED_FILE).unlink(missing_ok=True)
        run = training.TrainingRun.load(run_directory)
        return training.register(self.settings, run, CHAMPION if champion else CHALLENGER)

    def make_champion(self, version: str) -> str:
        """Move the champion alias to ``version`` the way the promotion gates do, without the
        gates: the replaced one kept as ``previous_champion`` (``make rollback`` restores it),
        the challenger alias cleared. Returns the replaced version ("" without one)."""
        from pipelines.gates import move_champion

        return move_champion(self.settings, version)

    def delete_aliases_except_champion(self) -> None:
        """Delete the ``previous_champion`` and ``challenger`` aliases: nothing to roll back
        to, nothing waiting for promotion."""
        from model.registry import CHALLENGER, client, resolve_alias
        from pipelines.gates import PREVIOUS_CHAMPION

        registry = client(self.settings)
        for alias in (PREVIOUS_CHAMPION, CHALLENGER):
            if resolve_alias(self.settings, alias) is not None:
                registry.delete_registered_model_alias(self.settings.model_name, alias)

    # --- the promotion gates and training ----------------------------------------------------

    def promote(self) -> tuple[int, str]:
        """``fraudlab promote`` in this process, with the configuration as it is now: the
        challenger against the champion; (exit code, report) — 0 when it was promoted."""
        from pipelines import gates

        return gates.promote(self.settings.reloaded())

    def gate_report(
        self, champion: ModelBundle, challenger: ModelBundle, evidence: str | None
    ) -> dict[str, Any]:
        """Every promotion gate for ``challenger`` against ``champion``, as configured now, on
        the holdout ``fraudlab promote`` would build now (no alias moves, no report written);
        ``evidence`` is the challenger's ``data_validation`` tag. The report's ``passed`` and
        ``gates`` (``name``, ``passed``, ``summary``, ``details``)."""
        from pipelines import gates

        return gates.evaluate_gates(self.settings.reloaded(), champion, challenger, evidence)

    def screen_model(self, bundle: ModelBundle) -> list[GateResult]:
        """The gates a model passes on its own (ONNX parity, the leakage screen), on a fresh
        holdout: ``GateResult``s with ``name``, ``passed``, ``summary``."""
        from pipelines import gates

        return gates.screen(self.settings, bundle)

    def train_and_keep_run(
        self,
        archive: Path,
        *,
        reason: str,
        clock: pd.Timestamp | None = None,
        overrides: Mapping[str, Any] | None = None,
        relabel: Callable[[pd.DataFrame], None] | None = None,
        inspect: Callable[[ModelBundle], None] | None = None,
        keep_training_set: bool = True,
    ) -> None:
        """Train a model with training's own stages (validate the raw window, build the
        training set, train, evaluate: ``fraudlab train`` without registering) and keep the
        run directory in ``archive`` (``keep_run``; ``unpack_run`` and ``register_run`` at each
        break). The run directory under ``<home>/training`` is removed either way.

        ``clock`` trains as of another moment; ``overrides`` are settings for this training
        only (``feature_service=...``); ``relabel`` edits the training set's frame in place
        before the fit (its file and recorded data hash and fraud counts follow); ``inspect``
        sees the evaluated, unregistered bundle before it is archived;
        ``keep_training_set=False`` leaves the training set out of the archive."""
        from model import registry
        from pipelines import training
        from pipelines.data import REQUEST_COLUMNS, frame_hash

        settings = self.settings.model_copy(update=dict(overrides)) if overrides else self.settings
        run = training.start_run(settings, reason=reason, clock=clock)
        try:
            training.validate_raw_data(settings, run)
            frame = training.write_training_set(settings, run).frame
            if relabel is not None:
                relabel(frame)
                frame.to_parquet(run.path(training.TRAINING_SET_FILE), index=False)
                meta = json.loads(run.path(training.TRAINING_SET_META).read_text())
                meta["data_hash"] = frame_hash(frame[[*REQUEST_COLUMNS, "label"]])
                for name, split in meta["splits"].items():
                    split["frauds"] = int(frame.loc[frame["split"] == name, "label"].sum())
                run.path(training.TRAINING_SET_META).write_text(json.dumps(meta, indent=2))
            training.train(settings, run)
            training.evaluate(settings, run)
            if inspect is not None:
                spec = json.loads((run.bundle / registry.SPEC_FILE).read_text())
                inspect(registry.ModelBundle(settings.model_name, "", "", run.bundle, spec))
            skip = () if keep_training_set else {training.TRAINING_SET_FILE}
            self.keep_run(run.directory, archive, skip=skip)
        finally:
            shutil.rmtree(run.directory, ignore_errors=True)

    # --- the monitors' judgements ------------------------------------------------------------

    def values_differ(self, served: object, offline: object) -> bool:
        """The skew monitor's rule for one value: missing equals missing, strings compare
        exactly, numbers to 1e-9 (``monitoring.skew.values_differ``)."""
        from monitoring.skew import values_differ

        return values_differ(served, offline)[0]

    def judge_drift(self, window: list[PredictionRecord]) -> DriftResult:
        """The drift monitor's verdict on ``window`` (``prediction_window``'s records) against
        the champion's training sample, configured as the stack is now — ``make monitor
        M=drift``'s judgement without its reports (``monitoring.drift.judge_window``): a
        ``DriftResult`` (``status``, ``columns`` with ``column``, ``psi``, ``status`` ...)."""
        from monitoring import sources
        from monitoring.drift import judge_window

        settings = self.settings.reloaded()
        return judge_window(settings, sources.load_champion(settings), window)[0]

    def run_drift_monitor(self) -> DriftResult:
        """Run the drift monitor as ``make monitor M=drift`` does, configured as the stack is
        now (reports written to the monitoring workspace); its ``DriftResult``."""
        from monitoring.drift import run_drift

        return run_drift(self.settings.reloaded())

    def judge_freshness(self) -> tuple[FreshnessResult, list[ViewFreshness]]:
        """The freshness monitor's judgement at the clock, configured as the stack is now, with
        no report written: the ``FreshnessResult`` and, of its views, the batch ones (the push
        view left out) — each with ``view``, ``status``, ``detail``, ``materialized_until``."""
        from features.store import open_store
        from monitoring.freshness import PUSH, compute_freshness, view_states
        from pipelines.data import read_clock

        settings = self.settings.reloaded()
        result = compute_freshness(
            view_states(open_store(settings)),
            read_clock(settings),
            None,
            alert_after_s=settings.freshness_alert_after_hours * 3600.0,
            push_alert_share=settings.freshness_push_alert_share,
        )
        return result, [v for v in result.views if v.kind != PUSH]

    # --- schedules ---------------------------------------------------------------------------

    def pause_schedule(self, name: str) -> bool:
        """Pause a scheduled job (``fraudlab schedule pause``): its runner skips it until it is
        resumed. False if it already was paused."""
        from pipelines import schedules

        return schedules.pause(self.settings, name)

    def resume_schedule(self, name: str) -> bool:
        """Resume a paused job (``fraudlab schedule resume``); False if it was not paused."""
        from pipelines import schedules

        return schedules.resume(self.settings, name)

    def schedule_active(self, name: str) -> bool:
        """Whether the job ``name`` runs at its next scheduled time."""
        from pipelines import schedules

        return schedules.active(self.settings, name)

    def describe_schedules(self) -> list[str]:
        """One line per scheduled job, as ``fraudlab status`` lists them (PAUSED since ...)."""
        from pipelines import schedules

        return schedules.describe(self.settings)

    # --- waiting and the interviewer's log ---------------------------------------------------

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        """Poll ``predicate`` every half second; raise ``TimeoutError`` naming ``what``."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not reached within {timeout_s:.0f}s")
            time.sleep(0.5)

    def log(self, message: str) -> None:
        """A line for the interviewer's log (captured by the engine, shown by ``reveal``)."""
        print(message, flush=True)
