"""The scenario engine: the verbs every scenario shares, and what keeps them hidden.

Owns: ``Lab`` — list, break, verify, hint, reveal, reset, seal, unseal and the status line —
and the rules around them: break checks the steady state first and injects only into a healthy
baseline; everything a scenario prints is captured (file descriptors included) and kept
encrypted for the interviewer; the active scenario lives only in the encrypted state; sealing
encrypts the catalogue in place and hides the change from ``git status`` with
``--skip-worktree``.

Must not: print (the CLI formats what the verbs return), know any particular scenario, or touch
the repository beyond the catalogue's index flags — scenarios do their own git work through
their context.
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

from foundation.settings import REPO_ROOT, Settings
from lab import baseline, crypto
from lab.catalogue import (
    BRIEF,
    MANIFEST,
    NOTES,
    Catalogue,
    CatalogueError,
    InterviewerNotes,
    Scenario,
    catalogue_files,
    catalogue_root,
    parse_manifest,
)
from lab.context import Check, ScenarioContext, summarise_levels
from lab.document import Bullets, parse_markdown
from lab.manifest import Manifest, Variant, render
from lab.record import Event, EventKind, Records, Session, outcomes
from lab.state import ActiveScenario, LabStore, Mode

LOG_TAIL_LINES = 60
SEED_RANGE = 10_000
# The ticket's footer in interview mode: the candidate is told what the record keeps.
RECORDED = (
    "This session is recorded: when this ticket was shown, each hint and each `make verify` "
    "(OK/NO per check){commands}, with their times."
)
RECORDED_COMMANDS = (
    ", and the names of the `fraudlab` and `make` commands you run on this machine (never "
    "their arguments)"
)


class LabError(Exception):
    """A verb could not do its job; ``str()`` says why and what to do next."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Hint:
    number: int  # 1-based rung just given; equals total when the ladder is exhausted
    total: int
    text: str | None  # None: no rung left


PassphraseSource = Callable[[], str]


@contextmanager
def captured() -> Iterator[io.StringIO]:
    """Swallow everything written to stdout/stderr, from Python and from C extensions and
    children alike (file descriptors 1 and 2), and hand it back in the yielded buffer."""
    buffer = io.StringIO()
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            with redirect_stdout(buffer), redirect_stderr(buffer):
                yield buffer
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            sink.seek(0)
            buffer.write(sink.read().decode(errors="replace"))


class Lab:
    """The scenario lab of one stack (``settings.home``) and one repository checkout."""

    def __init__(
        self,
        settings: Settings,
        repo: Path | None = None,
        passphrase: PassphraseSource | None = None,
    ):
        self.settings = settings
        self.repo = Path(repo or getattr(settings, "lab_repo", None) or REPO_ROOT).resolve()
        # The catalogue lives in the lab repository (embedded) or apart from it: the
        # containerised lab runner reads the interviewer's checkout, mounted read-only, while
        # its repository is the candidate's checkout, which never holds the catalogue.
        self.catalogue_dir = (
            Path(settings.lab_catalogue).resolve()
            if settings.lab_catalogue
            else catalogue_root(self.repo)
        )
        self.store = LabStore(settings.lab_state_dir)
        self.records = Records(self.store.root)
        self._passphrase = passphrase

    # --- keys and catalogue --------------------------------------------------------------------

    def _key(self) -> bytes:
        """The state's key: the key file, or the passphrase's key while sealed."""
        if not self.store.sealed():
            return self.store.unsealed_key()
        if self._passphrase is None:
            raise LabError("the lab is sealed: this needs the passphrase", 2)
        try:
            return self.store.sealed_key(self._passphrase())
        except crypto.WrongPassphrase:
            raise LabError("wrong passphrase", 3) from None

    def catalogue(self, key: bytes | None = None) -> Catalogue:
        return Catalogue(self.catalogue_dir, key if self.store.sealed() else None)

    def _sealable_files(self) -> list[Path]:
        """The catalogue files ``seal`` encrypts in place: those of a catalogue inside the lab
        repository. A catalogue kept apart (the containerised runner's read-only mount of the
        interviewer's checkout) never reaches the candidate, and is left as it is."""
        if not self.catalogue_dir.is_relative_to(self.repo):
            return []
        return catalogue_files(self.catalogue_dir)

    def _load(self, key: bytes) -> tuple[ActiveScenario, Scenario]:
        state = self.store.load(key)
        if state is None:
            raise LabError("no scenario is active: `make scenarios`, then `make break S=<id>`", 2)
        return state, self.catalogue(key).get(state.scenario_id)

    def _context(self, scenario: Scenario, state: ActiveScenario) -> ScenarioContext:
        return ScenarioContext(
            settings=self.settings,
            scenario_id=scenario.id,
            seed=state.seed,
            variant=scenario.manifest.variant_from_values(state.variant),
            repo=self.repo,
            private=state.private,
            resources=scenario.read,
        )

    def active_context(self) -> tuple[Scenario, ModuleType, ScenarioContext]:
        """The active scenario, its module and a context on its state (interviewer only; the
        contract tests use it to apply fixes the way a candidate would)."""
        state, scenario = self._load(self._key())
        return scenario, scenario.module(), self._context(scenario, state)

    def fresh_context(self, ref: str, seed: int) -> tuple[Scenario, ModuleType, ScenarioContext]:
        """A context for scenario ``ref`` and ``seed`` with nothing injected (empty private
        data): what probes and ``reset`` see on a healthy stack."""
        key = self._key() if self.store.sealed() else None
        scenario = self.catalogue(key).get(ref)
        state = ActiveScenario(
            scenario_id=scenario.id,
            seed=seed,
            variant=scenario.manifest.pick_variant(seed).values(),
        )
        return scenario, scenario.module(), self._context(scenario, state)

    # --- probes --------------------------------------------------------------------------------

    def steady_state(
        self, scenario: Scenario, module: ModuleType, ctx: ScenarioContext
    ) -> list[Check]:
        """The manifest's steady-state probes, run quietly."""
        checks: list[Check] = []
        for probe in scenario.manifest.steady_state:
            if probe == "stack":
                checks.append(Check("the stack answers (MLflow, serving)", ctx.stack_healthy()))
            elif probe == "git":
                head = ctx.git("rev-parse", "--verify", "-q", "HEAD", check=False)
                checks.append(
                    Check("the repository has a commit checked out", head.returncode == 0)
                )
            else:
                function = getattr(module, probe, None)
                if not callable(function):
                    raise CatalogueError(f"steady_state probe '{probe}' is not in scenario.py")
                result = function(ctx)
                checks += [result] if isinstance(result, Check) else list(result)
        return checks

    def _baseline(self) -> dict[str, str | None]:
        """Where things stood before break: recorded for reveal and for scenarios' resets."""
        from control import stack

        def git(*args: str) -> str | None:
            result = subprocess.run(
                ["git", *args], cwd=self.repo, capture_output=True, text=True, check=False
            )
            return result.stdout.strip() if result.returncode == 0 else None

        return {
            "git_head": git("rev-parse", "HEAD"),
            "git_branch": git("symbolic-ref", "--short", "-q", "HEAD"),
            "served_model_version": stack.served_model_version(self.settings),
        }

    # --- verbs ---------------------------------------------------------------------------------

    def scenarios(self) -> list[Manifest]:
        key = self._key() if self.store.sealed() else None
        return [s.manifest for s in self.catalogue(key).scenarios()]

    def active_state(self) -> ActiveScenario | None:
        """The active scenario's state, or None (interviewer only: passphrase while sealed)."""
        return self.store.load(self._key())

    def break_(
        self,
        ref: str,
        seed: int | None = None,
        mode: Mode = Mode.INTERVIEW,
        learner: str | None = None,
    ) -> str:
        """Inject scenario ``ref`` and return the candidate's ticket (and nothing else).

        ``mode`` and ``learner`` say who broke it: lab mode (``lab.learning``) counts the
        session towards a learner's progress."""
        key = self._key()
        state = self.store.load(key)
        try:
            scenario = self.catalogue(key).get(ref)
        except CatalogueError as exc:
            raise LabError(str(exc), 2) from None
        module = scenario.module()
        if state is not None:
            if (
                state.scenario_id != scenario.id
                or (seed is not None and seed != state.seed)
                or (state.mode, state.learner) != (mode, learner)
            ):
                raise LabError(
                    "another scenario is active: `make reset` first (`make verify` checks it)"
                )
        else:
            seed = seed if seed is not None else secrets.randbelow(SEED_RANGE)
            state = ActiveScenario(
                scenario_id=scenario.id,
                seed=seed,
                variant=scenario.manifest.pick_variant(seed).values(),
                mode=mode,
                learner=learner,
            )
            ctx = self._context(scenario, state)
            with captured() as log:
                checks = self.steady_state(scenario, module, ctx)
                state.baseline = self._baseline()
                failing = [c for c in checks if not c.ok]
                if not failing and scenario.manifest.baseline:
                    # what reset returns to: the stack as it is now, verified healthy
                    baseline.take(self.settings)
            if failing:
                lines = "\n".join(f"  NO  {c.description}" for c in failing)
                raise LabError(
                    "the baseline is not healthy, so nothing was injected:\n"
                    f"{lines}\nnext: `make status` (and `make up`), then break again"
                )
            state.log += log.getvalue()
            self.records.start(key)
            self._note(Event(kind=EventKind.BREAK, at=state.started_at))
        # Saved before inject: if inject dies half way, `reset` still knows what to undo.
        self.store.save(state, key)
        ctx = self._context(scenario, state)
        started = datetime.now(UTC)
        try:
            with captured() as log:
                module.inject(ctx)
        except Exception:  # noqa: BLE001 - reported to the interviewer with the log
            state.log += log.getvalue() + traceback.format_exc()
            self.store.save(state, key)
            raise LabError(
                f"inject failed; `make reset` undoes what it did.\n{_tail(state.log)}"
            ) from None
        elapsed = (datetime.now(UTC) - started).total_seconds()
        state.log += log.getvalue() + f"[lab] inject took {elapsed:.1f}s\n"
        state.private = ctx.private
        self.store.save(state, key)
        if self.store.sealed():
            self.store.write_capsule(state, str(scenario.folder), scenario.files())
        ticket = render(scenario.text(BRIEF), ctx.variant, state.seed, ctx.private).strip()
        self._note(Event(kind=EventKind.TICKET))
        if state.mode == Mode.INTERVIEW:
            commands = RECORDED_COMMANDS if self.settings.stack != "compose" else ""
            ticket += "\n\n---\n\n" + RECORDED.format(commands=commands)
        return ticket + "\n"

    def verify(self) -> list[Check]:
        """The active scenario's checks. Works while sealed, without the passphrase."""
        if not self.store.active():
            raise LabError("no scenario is active: nothing to verify", 2)
        if self.store.sealed():
            opened = self.store.read_capsule()
            if opened is None:
                raise LabError("sealed without what verify needs: unseal, then seal again")
            state, folder, files = opened
            manifest = parse_manifest(files[MANIFEST].decode(), MANIFEST)
            scenario = Scenario(folder=Path(folder), manifest=manifest, overlay=files)
        else:
            state, scenario = self._load(self._key())
        module = scenario.module()
        ctx = self._context(scenario, state)
        with captured():
            try:
                checks = list(module.verify(ctx))
            except Exception:  # noqa: BLE001 - a crashing verify is a NO, never a traceback
                checks = [Check("the checks ran to the end", False, traceback.format_exc())]
        if not checks:
            checks = [Check("the scenario defines checks", False, "verify returned nothing")]
        summary = summarise_levels(checks)
        reached = summary.reached.value if summary and summary.reached else None
        self._note(Event(kind=EventKind.VERIFY, checks=outcomes(checks), reached=reached))
        return checks

    def require_interviewer(self) -> None:
        """Raise unless the caller may see interviewer material (passphrase while sealed)."""
        self._key()

    def hint(self) -> Hint:
        key = self._key()
        state, scenario = self._load(key)
        notes = self._notes(scenario, state)
        total = len(notes.hints)
        if state.hints_given >= total:
            return Hint(total, total, None)
        state.hints_given += 1
        self.store.save(state, key)
        self._note(Event(kind=EventKind.HINT, rung=state.hints_given, total=total))
        return Hint(state.hints_given, total, notes.hints[state.hints_given - 1])

    def reveal(self) -> str:
        key = self._key()
        state, scenario = self._load(key)
        self._note(Event(kind=EventKind.REVEAL))
        manifest = scenario.manifest
        variant = manifest.variant_from_values(state.variant)
        minutes = (datetime.now(UTC) - state.started_at).total_seconds() / 60
        lines = [
            f"# {manifest.id} {manifest.title}",
            "",
            (
                f"- folder: {scenario.folder.name}; kind: {manifest.kind}; difficulty: "
                f"{manifest.difficulty}; time box: {manifest.time_box_minutes} min"
            ),
            (
                f"- seed {state.seed}; started {state.started_at:%Y-%m-%d %H:%M} UTC "
                f"({minutes:.0f} min ago); hints given: {state.hints_given}"
            ),
            f"- concepts: {', '.join(manifest.concepts)}",
            "- variant:",
            *[
                f"  - {name} = {variant[name]}"
                + (f": {variant.note(name)}" if variant.note(name) else "")
                for name in variant
            ],
            "",
            self._notes(scenario, state).text.strip(),
        ]
        if state.log.strip():
            lines += [
                "",
                "## Lab log (inject and reset output, last lines)",
                "",
                "```",
                _tail(state.log),
                "```",
            ]
        return "\n".join(lines) + "\n"

    def reset(self) -> str:
        """Undo the active scenario and check the steady state; harmless when none is active."""
        key = self._key()
        state = self.store.load(key)
        if state is None:
            shutil.rmtree(self.store.root / "work", ignore_errors=True)
            return "no scenario is active: nothing to reset"
        scenario = self.catalogue(key).get(state.scenario_id)
        module = scenario.module()
        ctx = self._context(scenario, state)
        try:
            with captured() as log:
                module.reset(ctx)
                if scenario.manifest.baseline and baseline.exists(self.settings):
                    baseline.restore(self.settings, log=ctx.log)
                checks = self.steady_state(scenario, module, ctx)
        except Exception:  # noqa: BLE001 - the state stays, so reset can be retried
            state.log += log.getvalue() + traceback.format_exc()
            state.private = ctx.private
            self.store.save(state, key)
            raise LabError(
                f"reset failed; the scenario stays active, fix the cause and run `make reset` "
                f"again.\n{_tail(state.log)}"
            ) from None
        failing = [c for c in checks if not c.ok]
        if failing:
            state.log += log.getvalue()
            self.store.save(state, key)
            lines = "\n".join(f"  NO  {c.description}" for c in failing)
            raise LabError(
                f"reset ran, but the baseline is not healthy:\n{lines}\n"
                "next: `make status` (and `make up`), then `make reset` again"
            )
        shutil.rmtree(self.store.root / "work", ignore_errors=True)
        self._note(Event(kind=EventKind.RESET))
        self.records.ensure_keys(key)  # a session broken before the record existed
        session = self.session_of(state, scenario, key, ended=True)
        self.records.save(session)
        self.records.clear_journal()
        self.store.clear()
        return f"reset: healthy baseline verified ({len(checks)} steady-state probe(s) pass)"

    # --- seal ----------------------------------------------------------------------------------

    def seal(self, passphrase: str) -> str:
        """Encrypt the catalogue in place (hidden from ``git status``) and put the state under
        the passphrase; remove the key file."""
        if self.store.sealed():
            raise LabError("the lab is already sealed", 2)
        if len(passphrase) < crypto.MIN_PASSPHRASE_LENGTH:
            raise LabError(f"use a passphrase of {crypto.MIN_PASSPHRASE_LENGTH}+ characters", 2)
        old_key = self.store.unsealed_key()
        state = self.store.load(old_key)
        capsule: tuple[str, dict[str, bytes]] | None = None
        if state is not None:
            scenario = self.catalogue().get(state.scenario_id)
            capsule = (str(scenario.folder), scenario.files())
        files = self._sealable_files()
        relative = [str(p.relative_to(self.repo)) for p in files]
        self.records.ensure_keys(old_key)
        # The seal file first: if sealing stops half way, unseal still opens what was sealed.
        key = self.store.new_seal(passphrase, relative)
        self.records.rewrap(old_key, key)
        for path in files:
            data = path.read_bytes()
            if not crypto.is_sealed(data):
                path.write_bytes(crypto.seal_bytes(key, data))
        self._skip_worktree(relative, True)
        for cache in self.catalogue_dir.rglob("__pycache__") if files else ():
            shutil.rmtree(cache, ignore_errors=True)
        if state is not None and capsule is not None:
            self.store.save(state, key)
            self.store.write_capsule(state, *capsule)
        self.store.key_file.unlink(missing_ok=True)
        if not files:
            return "sealed the lab state (the catalogue is read from outside this checkout)"
        return f"sealed {len(files)} catalogue file(s) and the lab state"

    def unseal(self, passphrase: str) -> str:
        if not self.store.sealed():
            raise LabError("the lab is not sealed", 2)
        try:
            key = self.store.sealed_key(passphrase)
        except crypto.WrongPassphrase:
            raise LabError("wrong passphrase", 3) from None
        recorded = self.store.seal_info().files
        paths = {self.repo / rel for rel in recorded} | set(self._sealable_files())
        opened = 0
        for path in sorted(paths):
            if path.is_file():
                data = path.read_bytes()
                if crypto.is_sealed(data):
                    path.write_bytes(crypto.unseal_bytes(key, data))
                    opened += 1
        self._skip_worktree(recorded, False)
        state = self.store.load(key)
        self.store.drop_capsule()
        self.store.seal_file.unlink()
        self.records.rewrap(key, self.store.unsealed_key())
        if state is not None:
            self.store.save(state, self.store.unsealed_key())
        return f"unsealed {opened} catalogue file(s) and the lab state"

    def _skip_worktree(self, relative: list[str], on: bool) -> None:
        """Flag the tracked ones among ``relative`` so ``git status`` ignores (or again sees)
        their working-tree content. Untracked files and non-git checkouts are left alone."""
        inside = subprocess.run(
            ["git", "rev-parse", "--is-inside-work-tree"],
            cwd=self.repo,
            capture_output=True,
            text=True,
            check=False,
        )
        if inside.returncode != 0 or not relative:
            return
        tracked = subprocess.run(
            ["git", "ls-files", "-z", "--", *relative],
            cwd=self.repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\0")
        tracked = [p for p in tracked if p]
        if tracked:
            flag = "--skip-worktree" if on else "--no-skip-worktree"
            subprocess.run(
                ["git", "update-index", flag, "-z", "--stdin"],
                cwd=self.repo,
                input="\0".join(tracked) + "\0",
                capture_output=True,
                text=True,
                check=True,
            )

    # --- the record ----------------------------------------------------------------------------

    def _note(self, event: Event) -> None:
        """Add ``event`` to the active session's record. A record that cannot be written (a
        full disk, a file the candidate removed) never stops a verb."""
        try:
            self.records.append(event)
        except OSError:
            pass

    def session_of(
        self, state: ActiveScenario, scenario: Scenario, key: bytes, ended: bool = False
    ) -> Session:
        """The session of ``state``: its timeline so far and, rendered for its variant, what
        the scorecard needs from the interviewer notes."""
        notes = self._notes(scenario, state)
        manifest = scenario.manifest
        follow_ups = [
            item
            for block in parse_markdown(notes.sections.get("Follow-up questions", ""))
            if isinstance(block, Bullets)
            for item in block.items
        ]
        return Session(
            id=self.records.new_session_id(state.started_at),
            scenario_id=manifest.id,
            title=manifest.title,
            kind=manifest.kind.value,
            difficulty=manifest.difficulty.value,
            seniority=[s.value for s in manifest.seniority],
            time_box_minutes=manifest.time_box_minutes,
            mode=state.mode,
            learner=state.learner,
            seed=state.seed,
            variant=state.variant,
            started_at=state.started_at,
            ended_at=datetime.now(UTC) if ended else None,
            hints_total=len(notes.hints),
            rubric=notes.sections.get("Rubric", "").strip(),
            follow_ups=follow_ups,
            events=self.records.events(key),
        )

    def sessions(self) -> list[Session]:
        """Finished sessions, oldest first (interviewer only: passphrase while sealed)."""
        return self.records.sessions(self._key())

    def session(self, session_id: str | None = None) -> Session:
        """A session by id; without one, the active session (its timeline so far) or, when
        none is active, the last finished one. Interviewer only."""
        key = self._key()
        if session_id is None:
            state = self.store.load(key)
            if state is not None:
                return self.session_of(state, self.catalogue(key).get(state.scenario_id), key)
            ids = self.records.session_ids()
            if not ids:
                raise LabError("no session recorded yet: `make break S=<id>` starts one", 2)
            session_id = ids[-1]
        try:
            return self.records.load(session_id, key)
        except FileNotFoundError:
            raise LabError(
                f"no session '{session_id}': `make scorecard LIST=1` lists them", 2
            ) from None

    def record_marks(self, session: Session, events: list[Event]) -> Session:
        """Add the interviewer's marks and notes to ``session`` (the journal while it is
        active, its archive once finished)."""
        self._key()
        if session.finished:
            session = session.model_copy(update={"events": [*session.events, *events]})
            self.records.save(session)
            return session
        for event in events:
            self.records.append(event)
        return session.model_copy(update={"events": [*session.events, *events]})

    # --- status --------------------------------------------------------------------------------

    def status_line(self) -> str | None:
        """At most "a scenario is active": the only thing `make status` says about the lab."""
        if self.store.active():
            return "scenario lab: a scenario is active" + (
                " (sealed)" if self.store.sealed() else ""
            )
        if self.store.sealed():
            return "scenario lab: sealed, no scenario active"
        return None

    def _notes(self, scenario: Scenario, state: ActiveScenario) -> InterviewerNotes:
        variant: Variant = scenario.manifest.variant_from_values(state.variant)
        return InterviewerNotes.parse(
            render(scenario.text(NOTES), variant, state.seed, state.private)
        )


def _tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])
