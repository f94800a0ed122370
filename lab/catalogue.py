"""The scenario catalogue: the folders under ``broken_scenarios/`` and what is in them.

Owns: finding scenario folders (``<NN>-<symptom-slug>``; folders starting with ``_`` are
templates), reading their files whether plain or sealed, validating the folder contract, parsing
the interviewer notes (sections, hint ladder) and loading ``scenario.py`` as a module.

Must not: hold state, print, or run a scenario's functions (``engine`` does that).

A scenario's module is compiled from its source text rather than imported: sealed sources exist
only in memory, and nothing is cached to ``__pycache__`` next to the catalogue.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import yaml

from lab import crypto
from lab.manifest import Manifest

CATALOGUE_DIR = "broken_scenarios"
FOLDER = re.compile(r"^(?P<id>[0-9]{2})-(?P<slug>[a-z0-9]+(?:-[a-z0-9]+)*)$")
MANIFEST = "scenario.yaml"
BRIEF = "brief.md"
MODULE = "scenario.py"
NOTES = "INTERVIEWER.md"
REQUIRED_FILES = (MANIFEST, BRIEF, MODULE, NOTES)
# The interviewer notes' sections, in this order (level-2 headings).
NOTE_SECTIONS = (
    "Root cause",
    "Diagnosis path",
    "Hint ladder",
    "Reference fix",
    "Rubric",
    "Follow-up questions",
)
# scenario.py must define these; the last three are for tests/scenarios only.
MODULE_FUNCTIONS = ("inject", "verify", "reset", "symptom", "reference_fix", "wrong_fix")


class CatalogueError(Exception):
    """A scenario folder breaks the contract; the message says which and how."""


class SealedError(Exception):
    """A sealed file was needed and no key was given."""


def catalogue_root(repo: Path) -> Path:
    return repo / CATALOGUE_DIR


@dataclass
class Scenario:
    """One scenario folder. ``read`` returns a file's plain bytes (decrypting if sealed)."""

    folder: Path
    manifest: Manifest
    key: bytes | None = None
    overlay: dict[str, bytes] = field(default_factory=dict)  # files given from a capsule

    @property
    def id(self) -> str:
        return self.manifest.id

    @property
    def slug(self) -> str:
        return self.folder.name

    def read(self, name: str) -> bytes:
        if name in self.overlay:
            return self.overlay[name]
        return read_plain(self.folder / name, self.key)

    def text(self, name: str) -> str:
        return self.read(name).decode()

    def files(self, exclude: tuple[str, ...] = (NOTES,)) -> dict[str, bytes]:
        """Every file of the folder (plain), except the interviewer notes by default."""
        if self.overlay:
            return {k: v for k, v in self.overlay.items() if k not in exclude}
        return {
            path.name: self.read(path.name)
            for path in sorted(self.folder.iterdir())
            if path.is_file() and path.name not in exclude and not path.name.startswith(".")
        }

    def module(self) -> ModuleType:
        return load_module(self.text(MODULE), f"{self.folder}/{MODULE}")

    def notes(self) -> InterviewerNotes:
        return InterviewerNotes.parse(self.text(NOTES))


def read_plain(path: Path, key: bytes | None) -> bytes:
    data = path.read_bytes()
    if crypto.is_sealed(data):
        if key is None:
            raise SealedError(f"{path.name} is sealed")
        return crypto.unseal_bytes(key, data)
    return data


def load_module(source: str, filename: str) -> ModuleType:
    """Compile ``scenario.py`` from its text. Registered in ``sys.modules`` under a neutral
    name because dataclasses and typing resolve annotations through it."""
    name = f"fraudlab_lab_scenario_{abs(hash(filename)):x}"
    module = ModuleType(name)
    module.__file__ = filename
    sys.modules[name] = module
    exec(compile(source, filename, "exec"), module.__dict__)  # noqa: S102 - our own catalogue
    missing = [f for f in MODULE_FUNCTIONS if not callable(getattr(module, f, None))]
    if missing:
        raise CatalogueError(f"{filename} does not define {', '.join(missing)}")
    return module


def parse_manifest(text: str, where: str) -> Manifest:
    try:
        return Manifest.model_validate(yaml.safe_load(text))
    except Exception as exc:  # noqa: BLE001 - pydantic and yaml errors alike, with the file
        raise CatalogueError(f"{where}: invalid manifest: {exc}") from None


@dataclass(frozen=True)
class InterviewerNotes:
    text: str
    sections: dict[str, str]
    hints: list[str]

    @classmethod
    def parse(cls, text: str) -> InterviewerNotes:
        sections: dict[str, str] = {}
        current: str | None = None
        for line in text.splitlines():
            heading = re.match(r"^##\s+(.+?)\s*$", line)
            if heading:
                current = heading.group(1)
                sections[current] = ""
            elif current is not None:
                sections[current] += line + "\n"
        hints = _numbered_items(sections.get("Hint ladder", ""))
        return cls(text=text, sections=sections, hints=hints)


def _numbered_items(section: str) -> list[str]:
    """Items of a markdown numbered list; continuation lines (indented) join their item."""
    items: list[str] = []
    for line in section.splitlines():
        start = re.match(r"^\d+\.\s+(.*)$", line)
        if start:
            items.append(start.group(1).strip())
        elif items and line.startswith((" ", "\t")) and line.strip():
            items[-1] += " " + line.strip()
    return items


class Catalogue:
    """The scenario folders of one repository checkout."""

    def __init__(self, root: Path, key: bytes | None = None):
        self.root = root
        self.key = key

    def folders(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_dir() and FOLDER.match(p.name))

    def load(self, folder: Path) -> Scenario:
        missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
        if missing:
            raise CatalogueError(f"{folder.name}: missing {', '.join(missing)}")
        manifest = parse_manifest(
            read_plain(folder / MANIFEST, self.key).decode(), f"{folder.name}/{MANIFEST}"
        )
        prefix = FOLDER.match(folder.name)
        if prefix is None or prefix.group("id") != manifest.id:
            raise CatalogueError(f"{folder.name}: manifest id '{manifest.id}' != folder prefix")
        return Scenario(folder=folder, manifest=manifest, key=self.key)

    def scenarios(self) -> list[Scenario]:
        found = [self.load(folder) for folder in self.folders()]
        ids = [s.id for s in found]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise CatalogueError(f"scenario ids used twice: {duplicates}")
        return found

    def get(self, ref: str) -> Scenario:
        """By id ('08' or '8') or by folder name; the error lists nothing (ids only)."""
        ref = ref.strip()
        wanted = ref.zfill(2) if ref.isdigit() else None
        for folder in self.folders():
            match = FOLDER.match(folder.name)
            assert match is not None
            if folder.name == ref or match.group("id") == wanted:
                return self.load(folder)
        raise CatalogueError(f"no scenario '{ref}': `make scenarios` lists the ids")


def catalogue_files(root: Path) -> list[Path]:
    """Every file the seal encrypts: all files of every scenario folder (not templates)."""
    files: list[Path] = []
    for folder in Catalogue(root).folders():
        files += sorted(
            p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts
        )
    return files
