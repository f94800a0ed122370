"""The interview record: a timeline of every session, from ``make break`` to ``make reset``.

Owns: what a session's timeline holds (``Event``: the ticket shown, each hint with its rung,
each verify with every check's OK/NO, the reveal, the reset, the ``fraudlab``/``make`` commands
run meanwhile — their names, never their arguments — and the interviewer's marks and notes), the
finished sessions (``Session``), and where both live in the lab directory:

- ``record.pub``: the public half of the record's key pair (hex);
- ``record.key``: its private half, encrypted with the state's key — the key file's while the
  lab is unsealed, the passphrase's while it is sealed (``rewrap`` follows ``seal``/``unseal``);
- ``journal.enc``: the active session's events, one sealed box per line (hex), appended by
  whoever acts, with the public key only: ``make verify`` and a candidate's commands need no
  passphrase to be recorded, and cannot read the record back;
- ``sessions/<started>.enc``: each finished session, one sealed box (hex), kept after reset so
  that ``make scorecard`` works for past sessions.

Ciphertext is stored as hex, which spells no word and no ``S=<id>``: the contract tests scan
the lab directory for both.

Must not: decide when to record (``engine`` and the ``fraudlab`` command do), or render (the
scorecard does). A candidate with a shell can delete these files; they cannot read or forge
what they say without the key.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lab import crypto
from lab.manifest import Scalar
from lab.state import Mode

JOURNAL = "journal.enc"
PUBLIC_KEY = "record.pub"
PRIVATE_KEY = "record.key"
SESSIONS = "sessions"
STATE_FILE = "state.enc"  # the engine's: a scenario is active while it exists


class EventKind(StrEnum):
    BREAK = "break"
    TICKET = "ticket"
    HINT = "hint"
    VERIFY = "verify"
    REVEAL = "reveal"
    RESET = "reset"
    COMMAND = "command"
    MARK = "mark"
    NOTE = "note"


def _now() -> datetime:
    return datetime.now(UTC)


class CheckOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str
    ok: bool
    level: str | None = None


class Event(BaseModel):
    """One line of the timeline; the fields its kind needs, the others left empty."""

    model_config = ConfigDict(extra="forbid")

    kind: EventKind
    at: datetime = Field(default_factory=_now)
    rung: int | None = None  # hint: the rung given
    total: int | None = None  # hint: rungs on the ladder
    checks: list[CheckOutcome] = Field(default_factory=list)  # verify
    reached: str | None = None  # verify: the highest level every check of which passed
    command: str | None = None  # command: e.g. "fraudlab monitor" (never its arguments)
    dimension: str | None = None  # mark: a rubric row, or "overall"
    level: str | None = None  # mark: junior | mid | senior
    text: str | None = None  # note


class Session(BaseModel):
    """A session from break to reset, with what the scorecard needs after the catalogue moved
    on: the scenario's description, the rubric and follow-ups rendered for its variant."""

    model_config = ConfigDict(extra="forbid")

    id: str
    scenario_id: str
    title: str
    kind: str
    difficulty: str
    seniority: list[str]
    time_box_minutes: int
    mode: Mode = Mode.INTERVIEW
    learner: str | None = None
    seed: int
    variant: dict[str, Scalar] = Field(default_factory=dict)
    started_at: datetime
    ended_at: datetime | None = None  # None: still active
    hints_total: int = 0
    rubric: str = ""  # the notes' Rubric section (markdown)
    follow_ups: list[str] = Field(default_factory=list)
    events: list[Event] = Field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.ended_at is not None


class Records:
    """The record files of one lab directory ``root``."""

    def __init__(self, root: Path):
        self.root = root
        self.public_file = root / PUBLIC_KEY
        self.private_file = root / PRIVATE_KEY
        self.journal = root / JOURNAL
        self.sessions_dir = root / SESSIONS

    # --- keys ------------------------------------------------------------------------------

    def ensure_keys(self, state_key: bytes) -> None:
        """Create the record's key pair on first use, its private half under ``state_key``."""
        if self.public_file.exists() and self.private_file.exists():
            return
        private, public = crypto.new_box_keys()
        crypto.write_private(self.private_file, crypto.encrypt(state_key, private))
        crypto.write_private(self.public_file, public.hex().encode())

    def rewrap(self, old_key: bytes, new_key: bytes) -> None:
        """Put the private key under ``new_key`` (seal: the passphrase's; unseal: the file's)."""
        if not self.private_file.exists():
            self.ensure_keys(new_key)
            return
        private = crypto.decrypt(old_key, self.private_file.read_bytes())
        crypto.write_private(self.private_file, crypto.encrypt(new_key, private))

    def _public(self) -> bytes | None:
        if not self.public_file.exists():
            return None
        return bytes.fromhex(self.public_file.read_text().strip())

    def _private(self, state_key: bytes) -> bytes:
        return crypto.decrypt(state_key, self.private_file.read_bytes())

    def _seal(self, data: bytes) -> bytes:
        public = self._public()
        if public is None:
            raise RuntimeError("the record has no key yet: `make break` creates it")
        return crypto.seal_box(public, data).hex().encode()

    # --- the active session's journal ------------------------------------------------------

    def start(self, state_key: bytes) -> None:
        """A new session: keys ready, an empty journal."""
        self.ensure_keys(state_key)
        self.journal.unlink(missing_ok=True)

    def append(self, event: Event) -> bool:
        """Add ``event`` to the journal with the public key only; False when there is no key
        (nothing was ever broken here)."""
        if self._public() is None:
            return False
        line = self._seal(event.model_dump_json().encode()) + b"\n"
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        # One write of one line to a file opened for appending: concurrent writers (a verify
        # and a command at the same moment) do not interleave.
        fd = os.open(self.journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        return True

    def events(self, state_key: bytes) -> list[Event]:
        """The journal's events in time order (lines that do not open are skipped: a
        candidate may have truncated the file, which the timeline then shows by its gaps)."""
        if not self.journal.exists():
            return []
        private = self._private(state_key)
        events = []
        for line in self.journal.read_bytes().splitlines():
            try:
                events.append(
                    Event.model_validate_json(
                        crypto.open_box(private, bytes.fromhex(line.decode()))
                    )
                )
            except (ValueError, crypto.WrongPassphrase):
                continue
        return sorted(events, key=lambda e: e.at)

    def clear_journal(self) -> None:
        self.journal.unlink(missing_ok=True)

    # --- finished sessions -----------------------------------------------------------------

    def save(self, session: Session) -> Path:
        path = self.sessions_dir / f"{session.id}.enc"
        crypto.write_private(path, self._seal(session.model_dump_json().encode()))
        return path

    def new_session_id(self, started_at: datetime) -> str:
        base = f"{started_at:%Y%m%d-%H%M%S}"
        candidate, n = base, 1
        while (self.sessions_dir / f"{candidate}.enc").exists():
            n += 1
            candidate = f"{base}-{n}"
        return candidate

    def session_ids(self) -> list[str]:
        if not self.sessions_dir.is_dir():
            return []
        return sorted(p.stem for p in self.sessions_dir.glob("*.enc"))

    def load(self, session_id: str, state_key: bytes) -> Session:
        path = self.sessions_dir / f"{session_id}.enc"
        if not path.exists():
            raise FileNotFoundError(session_id)
        data = crypto.open_box(self._private(state_key), bytes.fromhex(path.read_text()))
        return Session.model_validate_json(data)

    def sessions(self, state_key: bytes) -> list[Session]:
        return [self.load(session_id, state_key) for session_id in self.session_ids()]


def outcomes(checks: Sequence[Any]) -> list[CheckOutcome]:
    """Verify's checks as the record keeps them (description, OK/NO, level; never the detail,
    which may quote the candidate's files)."""
    return [
        CheckOutcome(
            description=c.description,
            ok=bool(c.ok),
            level=str(c.level) if getattr(c, "level", None) else None,
        )
        for c in checks
    ]


# --- commands run during a session ---------------------------------------------------------

UNRECORDED_COMMANDS = frozenset({"lab"})  # the lab's own verbs record themselves


def command_words(group: Any, argv: Sequence[str]) -> list[str]:
    """The command path of ``argv`` in a click ``group`` (``["config", "set"]`` for
    ``fraudlab config set psi_alert=0.4``): subcommand names only, options and arguments never,
    since they may hold anything a person typed."""
    words: list[str] = []
    command = group
    for arg in argv:
        commands = getattr(command, "commands", None)
        if not commands or arg.startswith("-") or arg not in commands:
            break
        words.append(arg)
        command = commands[arg]
    return words


def note_command(lab_dir: Path, words: Sequence[str], interactive: bool | None = None) -> bool:
    """Record that a person ran ``fraudlab <words>`` (or a ``make`` target calling it) while a
    scenario is active. Only commands typed at a terminal count: the stack's own processes, the
    lab's and its scenarios' commands run without one. Never raises: recording must not break
    the command. True when a line was written."""
    try:
        if interactive is None:
            interactive = sys.stdin is not None and sys.stdin.isatty()
        if not interactive or not words or words[0] in UNRECORDED_COMMANDS:
            return False
        if not (lab_dir / STATE_FILE).exists():
            return False
        return Records(lab_dir).append(
            Event(kind=EventKind.COMMAND, command="fraudlab " + " ".join(words))
        )
    except Exception:  # noqa: BLE001 - a record that cannot be written is not the user's problem
        return False
