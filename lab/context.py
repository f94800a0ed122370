"""What a scenario's functions receive: ``ScenarioContext``, and what verify returns: ``Check``.

Owns: the small, stable surface a scenario is written against — the stack's settings, the
seeded variant, scenario-private data (persisted encrypted by the engine), quiet helpers to run
commands, git and the ``fraudlab`` CLI, and to check and restart the stack. Every method that
touches a process means the same in both stacks: embedded, it acts on the local processes
(``control.stack``); containerised (``settings.stack == "compose"``, the lab runner inside
the stack), on the service containers through the Docker Engine API (``control.containers``)
and on serving through its release supervisor (``control.serve``).

Must not: print to the candidate (everything a scenario prints is captured by the engine and
kept, encrypted, for the interviewer), or know about any particular scenario.
"""

from __future__ import annotations

import io
import random
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from foundation.settings import REPO_ROOT, Settings
from lab.manifest import Variant

DEFAULT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Check:
    """One verdict of ``verify`` (or of a steady-state or symptom probe).

    ``description`` is shown to the candidate next to OK/NO: say what is judged in neutral
    words, never the cause. ``detail`` is for the interviewer (``verify --explain``) and tests.
    """

    description: str
    ok: bool
    detail: str = ""


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
        ``check`` a non-zero exit raises ``CommandFailed`` carrying stdout and stderr.
        """
        result = subprocess.run(
            [str(part) for part in command],
            cwd=cwd or self.repo,
            env=dict(env) if env is not None else None,
            input=input,
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

        from control import stack

        def serving_runs_it() -> bool:
            try:
                httpx.post(f"{self.settings.serving_base_url}/reload", json={}, timeout=30)
            except httpx.HTTPError:
                return False
            return stack.served_model_version(self.settings) == version

        self.wait_for(serving_runs_it, timeout_s, f"serving to run v{version}")

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
