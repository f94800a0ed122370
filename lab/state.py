"""The lab's state on disk: the active scenario, the seal, and the verify capsule.

Owns: the lab directory (``Settings.lab_state_dir``: ``<home>/lab/`` unless ``FRAUDLAB_LAB_DIR``
says otherwise; the containerised stack keeps it in a volume of its own) — every file in it is
encrypted or a key, and none is named after a scenario:

- ``state.enc``: the active scenario (id, seed, variant, hints given, start time, baseline,
  scenario-private data, the captured inject/reset log), a Fernet token;
- ``lab.key``: the key of ``state.enc`` while the lab is unsealed (removed by ``seal``);
- ``seal.json``: scrypt salt and cost plus a passphrase check, present while sealed;
- ``capsule.enc`` + ``capsule.key``: present only while sealed with a scenario active — what
  ``verify`` needs to run without the passphrase (see ``Capsule``).

Must not: decide what the verbs do (``engine``) or read the catalogue.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lab import crypto
from lab.manifest import Scalar


class Mode(StrEnum):
    """Who broke the stack: an interviewer for a candidate (``make break``), or a learner for
    themselves (``make lab-start``, lab mode: no passphrase, progress kept per learner)."""

    INTERVIEW = "interview"
    LAB = "lab"


class ActiveScenario(BaseModel):
    """What the lab remembers about the scenario in progress."""

    model_config = ConfigDict(extra="forbid")

    scenario_id: str
    seed: int
    variant: dict[str, Scalar]
    mode: Mode = Mode.INTERVIEW
    learner: str | None = None  # lab mode: whose progress it counts for
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    hints_given: int = 0
    baseline: dict[str, Any] = Field(default_factory=dict)
    private: dict[str, Any] = Field(default_factory=dict)
    log: str = ""  # captured output of inject/reset: interviewer material


class SealInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    salt: str  # base64
    n: int
    r: int
    p: int
    check: str
    sealed_at: datetime
    files: list[str]  # sealed catalogue files, relative to the lab repository


class Capsule(BaseModel):
    """What ``verify`` needs while the lab is sealed: the candidate runs it without the
    passphrase, so this cannot be under the passphrase. It holds the active scenario's files
    (not its interviewer notes) and its state (not the log). Encrypted with a key file next to
    it: not plain text, but a determined candidate who reads this module can open it. The
    containerised workstation, which has no catalogue at all, is the stronger hand-over."""

    model_config = ConfigDict(extra="forbid")

    state: ActiveScenario
    folder: str
    files: dict[str, str]  # name -> base64 content


class LabStore:
    """Reads and writes the lab directory ``root``; keys are passed in, never guessed."""

    def __init__(self, root: Path):
        self.root = root.resolve()
        self.state_file = self.root / "state.enc"
        self.key_file = self.root / "lab.key"
        self.seal_file = self.root / "seal.json"
        self.capsule_file = self.root / "capsule.enc"
        self.capsule_key_file = self.root / "capsule.key"

    # --- facts anyone may ask ----------------------------------------------------------------

    def active(self) -> bool:
        return self.state_file.exists()

    def sealed(self) -> bool:
        return self.seal_file.exists()

    # --- keys ----------------------------------------------------------------------------------

    def unsealed_key(self) -> bytes:
        """The key file's key, created on first use (only while unsealed)."""
        if self.sealed():
            raise RuntimeError("the lab is sealed: its key comes from the passphrase")
        if not self.key_file.exists():
            crypto.write_private(self.key_file, crypto.new_key())
        return self.key_file.read_bytes().strip()

    def seal_info(self) -> SealInfo:
        return SealInfo.model_validate_json(self.seal_file.read_text())

    def sealed_key(self, passphrase: str) -> bytes:
        """The passphrase's key; raises ``WrongPassphrase`` unless it is the sealing one."""
        info = self.seal_info()
        key = crypto.derive_key(passphrase, base64.b64decode(info.salt), info.n, info.r, info.p)
        if not crypto.key_opens(key, info.check):
            raise crypto.WrongPassphrase("wrong passphrase")
        return key

    def new_seal(self, passphrase: str, files: list[str]) -> bytes:
        salt = crypto.new_salt()
        key = crypto.derive_key(passphrase, salt)
        info = SealInfo(
            salt=base64.b64encode(salt).decode(),
            n=crypto.SCRYPT_N,
            r=crypto.SCRYPT_R,
            p=crypto.SCRYPT_P,
            check=crypto.passphrase_check(key),
            sealed_at=datetime.now(UTC),
            files=files,
        )
        crypto.write_private(self.seal_file, info.model_dump_json(indent=2).encode())
        return key

    def update_seal_files(self, files: list[str]) -> None:
        info = self.seal_info()
        info.files = files
        crypto.write_private(self.seal_file, info.model_dump_json(indent=2).encode())

    # --- the active scenario ---------------------------------------------------------------

    def load(self, key: bytes) -> ActiveScenario | None:
        if not self.state_file.exists():
            return None
        data = crypto.decrypt(key, self.state_file.read_bytes())
        return ActiveScenario.model_validate_json(data)

    def save(self, state: ActiveScenario, key: bytes) -> None:
        crypto.write_private(
            self.state_file, crypto.encrypt(key, state.model_dump_json().encode())
        )

    def clear(self) -> None:
        for path in (self.state_file, self.capsule_file, self.capsule_key_file):
            path.unlink(missing_ok=True)

    # --- the verify capsule ----------------------------------------------------------------

    def write_capsule(self, state: ActiveScenario, folder: str, files: dict[str, bytes]) -> None:
        capsule = Capsule(
            state=state.model_copy(update={"log": ""}),
            folder=folder,
            files={name: base64.b64encode(data).decode() for name, data in files.items()},
        )
        if not self.capsule_key_file.exists():
            crypto.write_private(self.capsule_key_file, crypto.new_key())
        key = self.capsule_key_file.read_bytes().strip()
        crypto.write_private(
            self.capsule_file, crypto.encrypt(key, capsule.model_dump_json().encode())
        )

    def read_capsule(self) -> tuple[ActiveScenario, str, dict[str, bytes]] | None:
        if not (self.capsule_file.exists() and self.capsule_key_file.exists()):
            return None
        key = self.capsule_key_file.read_bytes().strip()
        capsule = Capsule.model_validate_json(crypto.decrypt(key, self.capsule_file.read_bytes()))
        files = {name: base64.b64decode(data) for name, data in capsule.files.items()}
        return capsule.state, capsule.folder, files

    def drop_capsule(self) -> None:
        self.capsule_file.unlink(missing_ok=True)
        self.capsule_key_file.unlink(missing_ok=True)


def to_json(value: Any) -> str:
    """Private data must survive a JSON round trip; say which value does not, early."""
    try:
        return json.dumps(value)
    except TypeError as exc:
        raise TypeError(f"scenario-private data must be JSON-serialisable: {exc}") from None
