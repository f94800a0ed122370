"""Serving releases: a copy of the serving packages that knows where it came from (the commit it
matches, if any), one per deploy (a tree deployed twice is two releases), and can say how it
differs from the working tree."""

from __future__ import annotations

import subprocess

import pytest

from control import releases
from tests.conftest import small_settings


@pytest.fixture
def source(tmp_path):
    """A tiny repository with the packages a release copies, committed."""
    root = tmp_path / "src"
    for package in releases.PACKAGES:
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text(f'"""{package}"""\n')
    (root / "serving" / "scorer.py").write_text("AMOUNT_SCALE = 1\n")
    (root / "features" / "feature_store.yaml").write_text("project: x\n")
    (root / "serving" / "__pycache__").mkdir()
    (root / "serving" / "__pycache__" / "scorer.cpython-311.pyc").write_bytes(b"\0")
    (root / "README.md").write_text("not part of a release\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=root, check=True)
    subprocess.run([*git, "add", "."], cwd=root, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=root, check=True)
    return root


def test_a_release_copies_the_serving_packages_and_records_its_commit(tmp_path, source) -> None:
    settings = small_settings(tmp_path / "home")
    release = releases.build(settings, source)
    files = {
        p.relative_to(release.path).as_posix() for p in release.path.rglob("*") if p.is_file()
    }
    assert "serving/scorer.py" in files and "features/feature_store.yaml" in files
    assert not any("__pycache__" in f or f == "README.md" for f in files)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert release.commit == head and release.modified is False
    assert releases.current(settings) is None  # built, not deployed
    releases.set_current(settings, release)
    assert releases.current(settings) == release


def test_the_same_tree_reuses_its_release_and_a_change_makes_a_new_one(tmp_path, source) -> None:
    settings = small_settings(tmp_path / "home")
    first = releases.find_or_build(settings, source)
    assert releases.find_or_build(settings, source) == first
    (source / "serving" / "scorer.py").write_text("AMOUNT_SCALE = 100\n")
    second = releases.find_or_build(settings, source)
    assert second.id != first.id and second.modified is True  # uncommitted edit deployed


def _git(root, *args: str) -> str:
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    return subprocess.run(
        [*git, *args], cwd=root, capture_output=True, text=True, check=True
    ).stdout


def test_each_deploy_of_the_same_tree_is_a_release_of_its_own_matching_its_commit(
    tmp_path, source
) -> None:
    settings = small_settings(tmp_path / "home")
    head = _git(source, "rev-parse", "HEAD").strip()
    first = releases.build(settings, source)
    again = releases.build(settings, source)  # the clean tree deployed a second time
    assert (first.id, again.id) == ("r1", "r2")
    for release in (first, again):
        assert release.commit == head and release.modified is False
        assert release.provenance() == f"{release.id} matches commit {head[:10]} exactly"
    assert first.content_hash == again.content_hash == releases.tree_hash(source)

    (source / "serving" / "scorer.py").write_text("AMOUNT_SCALE = 100\n")
    edited = releases.build(settings, source)
    assert edited.id == "r3" and edited.commit == head and edited.modified is True
    assert "matches no commit" in edited.provenance() and head[:10] in edited.provenance()

    _git(source, "commit", "-qam", "amounts in cents")
    committed = releases.build(settings, source)
    new_head = _git(source, "rev-parse", "HEAD").strip()
    assert committed.id == "r4" and committed.content_hash == edited.content_hash
    assert committed.provenance() == f"r4 matches commit {new_head[:10]} exactly"
    assert [releases.read(p).id for p in sorted(releases.releases_dir(settings).glob("r*"))] == [
        "r1",
        "r2",
        "r3",
        "r4",
    ]


def test_diff_shows_what_serving_runs_that_the_working_tree_does_not(tmp_path, source) -> None:
    settings = small_settings(tmp_path / "home")
    patched = releases.build(settings, source, {"serving/scorer.py": "AMOUNT_SCALE = 100\n"})
    assert patched.modified is True
    text = releases.diff(patched, source)
    assert "-AMOUNT_SCALE = 1\n" in text and "+AMOUNT_SCALE = 100\n" in text
    assert f"{patched.id}/serving/scorer.py" in text
    same = releases.build(settings, source)
    assert releases.diff(same, source) == ""
