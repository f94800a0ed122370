"""Serving releases: the code the scoring service runs is a deployed copy, not the working tree.

Owns: building a release (a copy of the packages serving imports, with where it came from:
commit, whether the tree differed from that commit, a content hash), the pointer to the release
serving runs (``<home>/releases/current.json``), and comparing a release with the working tree.
Must not: start or stop processes (``control.stack`` starts serving from the current release),
or decide what is deployed when (``fraudlab deploy`` and ``fraudlab up`` do).

Why a copy: in production what serves is what was deployed, and it drifts from ``main`` — a
hotfix shipped straight to serving, a branch deployed for a test and never rolled back. The
embedded stack keeps that property, so "what is actually running?" has an answer
(``fraudlab status``, ``fraudlab deploy --diff``) and a change to training code reaches serving
only when someone deploys it. ``fraudlab up`` deploys the working tree when nothing is deployed
yet; afterwards ``fraudlab deploy`` ships the working tree.

Every deploy is a release of its own (``r1``, ``r2``, … in deploy order), also when it ships a
tree deployed before: the prediction log names the release that scored each request, so "since
the fix was deployed" is a release id, and going back to ``r1``'s code is deploy ``r3``, not
``r1`` again. Each release records the commit it was built from and whether its files match
that commit (``Release.provenance``).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from foundation.settings import REPO_ROOT, Settings

# Everything the serving process imports from this repository (serving → the model contract,
# features, foundation), plus the Feast repo configuration. Serving never imports the training
# package (the layer contract, `make lint`); tests/unit/test_layers.py checks this list.
PACKAGES = ("foundation", "features", "model", "serving")
SUFFIXES = (".py", ".yaml")
CURRENT = "current.json"
RELEASE_FILE = "release.json"


@dataclass(frozen=True)
class Release:
    id: str
    created_at: str
    commit: str | None  # HEAD of the tree it was built from (None outside git)
    modified: bool  # its files differ from that commit's
    content_hash: str
    directory: str

    @property
    def path(self) -> Path:
        return Path(self.directory)

    def describe(self) -> str:
        commit = (self.commit or "no commit")[:10]
        return f"{self.id} ({commit}{', modified' if self.modified else ''})"

    def provenance(self) -> str:
        """Which commit the release matches, in words."""
        if self.commit is None:
            return f"{self.id} was built outside git: it matches no commit"
        if self.modified:
            return (
                f"{self.id} was built from commit {self.commit[:10]} with changes not committed"
                " there: it matches no commit"
            )
        return f"{self.id} matches commit {self.commit[:10]} exactly"


def releases_dir(settings: Settings) -> Path:
    return settings.home.resolve() / "releases"


def source_files(root: Path) -> dict[str, Path]:
    """The release's files under ``root``: relative path → file, in a stable order."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*")):
            if path.is_file() and path.suffix in SUFFIXES and "__pycache__" not in path.parts:
                found[str(path.relative_to(root))] = path
    return found


def content_hash(files: Mapping[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name] + b"\0")
    return digest.hexdigest()[:16]


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=False
        )
    except OSError:
        return None
    return done.stdout if done.returncode == 0 else None


def _commit_contents(root: Path, commit: str, names: Iterable[str]) -> dict[str, bytes] | None:
    """The committed bytes of ``names`` at ``commit`` (None when git cannot tell)."""
    listed = _git(root, "ls-tree", "-r", "--name-only", commit, "--", *PACKAGES)
    if listed is None:
        return None
    committed = {n for n in listed.splitlines() if n.endswith(SUFFIXES)}
    if committed != set(names):
        return {}
    out: dict[str, bytes] = {}
    for name in names:
        done = subprocess.run(
            ["git", "show", f"{commit}:{name}"], cwd=root, capture_output=True, check=False
        )
        if done.returncode != 0:
            return {}
        out[name] = done.stdout
    return out


def build(
    settings: Settings,
    source: Path = REPO_ROOT,
    changes: Mapping[str, str] | None = None,
) -> Release:
    """Copy the serving packages of ``source`` into a new release (with ``changes``: relative
    path → new text, applied on top), and return it. Nothing is deployed yet."""
    files = {name: path.read_bytes() for name, path in source_files(source).items()}
    for name, text in (changes or {}).items():
        files[name] = text.encode()
    commit = (_git(source, "rev-parse", "HEAD") or "").strip() or None
    committed = _commit_contents(source, commit, files) if commit else None
    modified = committed is None or committed != files
    root = releases_dir(settings)
    root.mkdir(parents=True, exist_ok=True)
    number = 1 + max((int(p.name[1:]) for p in root.glob("r*") if p.name[1:].isdigit()), default=0)
    release_id = f"r{number}"
    staging = root / f".{release_id}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    for name, data in files.items():
        target = staging / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    release = Release(
        id=release_id,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        commit=commit,
        modified=modified,
        content_hash=content_hash(files),
        directory=str(root / release_id),
    )
    (staging / RELEASE_FILE).write_text(json.dumps(asdict(release), indent=2) + "\n")
    staging.rename(root / release_id)
    return release


def read(directory: Path) -> Release:
    return Release(**json.loads((directory / RELEASE_FILE).read_text()))


def current(settings: Settings) -> Release | None:
    """The release serving runs (or will run at its next start); None before the first deploy."""
    pointer = releases_dir(settings) / CURRENT
    try:
        release_id = json.loads(pointer.read_text())["id"]
        return read(releases_dir(settings) / release_id)
    except (FileNotFoundError, KeyError, ValueError):
        return None


def set_current(settings: Settings, release: Release) -> None:
    """Point serving at ``release`` (atomically); takes effect when serving next starts."""
    pointer = releases_dir(settings) / CURRENT
    tmp = pointer.with_suffix(".tmp")
    tmp.write_text(json.dumps({"id": release.id, "since": datetime.now(UTC).isoformat()}))
    os.replace(tmp, pointer)


def clear_current(settings: Settings) -> None:
    """Deploy nothing: serving runs the code it was installed with (the containerised serving:
    the image's code) from its next start."""
    (releases_dir(settings) / CURRENT).unlink(missing_ok=True)


def tree_hash(source: Path = REPO_ROOT) -> str:
    """The content hash a release built from ``source`` now would have."""
    return content_hash({name: path.read_bytes() for name, path in source_files(source).items()})


def find_or_build(settings: Settings, source: Path = REPO_ROOT) -> Release:
    """A release with exactly the working tree's content: the newest such one, or a new one.

    For tooling that wants a release of some content; a deploy always builds a new one
    (``build``): each deploy is a release of its own, even of a tree deployed before.
    """
    wanted = tree_hash(source)
    root = releases_dir(settings)
    existing = sorted(
        (p for p in root.glob("r*") if (p / RELEASE_FILE).exists()),
        key=lambda p: int(p.name[1:]) if p.name[1:].isdigit() else -1,
        reverse=True,
    )
    for directory in existing:
        release = read(directory)
        if release.content_hash == wanted:
            return release
    return build(settings, source)


def diff(release: Release, source: Path = REPO_ROOT) -> str:
    """A unified diff from the working tree to the release: what serving runs that ``source``
    does not have (empty when they are the same)."""
    deployed = source_files(release.path)
    here = source_files(source)
    chunks: list[str] = []
    for name in sorted(set(deployed) | set(here)):
        a = here[name].read_text().splitlines(keepends=True) if name in here else []
        b = deployed[name].read_text().splitlines(keepends=True) if name in deployed else []
        if a != b:
            chunks.extend(
                difflib.unified_diff(
                    a, b, fromfile=f"working tree/{name}", tofile=f"{release.id}/{name}"
                )
            )
    return "".join(chunks)
