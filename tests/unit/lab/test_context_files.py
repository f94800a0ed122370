"""ScenarioContext's cache helpers: a training run kept in the lab's cache reads as no word,
comes back whole (minus what was skipped), and an interrupted write leaves no archive."""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

import pytest

from foundation.settings import Settings
from lab.context import ScenarioContext
from lab.manifest import Choice, Variant


def context(tmp_path) -> ScenarioContext:
    return ScenarioContext(
        settings=Settings(_env_file=None, home=tmp_path / "home"),
        scenario_id="00",
        seed=0,
        variant=Variant({"size": Choice(value=1)}),
        repo=tmp_path,
        private={},
        resources=lambda name: b"",
    )


def make_run(root) -> object:
    run = root / "20260401T000000Z"
    (run / "bundle").mkdir(parents=True)
    (run / "bundle" / "spec.json").write_text('{"feature_service": "fraud_model_v2"}')
    (run / "metrics.json").write_text('{"pr_auc": 0.8}')
    (run / "training_set.parquet").write_bytes(b"PAR1" + bytes(range(256)) * 40)
    return run


def test_a_kept_run_reads_as_no_word_and_unpacks_without_what_was_skipped(tmp_path) -> None:
    ctx = context(tmp_path)
    archive = ctx.cache_dir("model") / "artifact.hex"
    ctx.keep_run(make_run(tmp_path / "runs"), archive, skip={"training_set.parquet"})

    text = archive.read_text()
    assert re.fullmatch(r"[0-9a-f]+", text)  # hex spells no word a scan could find
    assert not list(archive.parent.glob("*.partial"))

    run = ctx.unpack_run(archive)
    assert run.name == "20260401T000000Z" and run.parent.parent == ctx.work_dir
    assert (run / "bundle" / "spec.json").read_text() == '{"feature_service": "fraud_model_v2"}'
    assert (run / "metrics.json").exists()
    assert not (run / "training_set.parquet").exists()

    (run / "scribble.txt").write_text("left by the last break")
    again = ctx.unpack_run(archive)  # afresh: nothing of the previous unpack survives
    assert not (again / "scribble.txt").exists()


def test_an_interrupted_keep_leaves_no_archive(tmp_path, monkeypatch) -> None:
    ctx = context(tmp_path)
    archive = ctx.cache_dir("model") / "artifact.hex"
    ctx.keep_run(make_run(tmp_path / "runs"), archive)
    kept = archive.read_text()

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(tarfile.TarFile, "add", disk_full)
    with pytest.raises(OSError):
        ctx.keep_run(make_run(tmp_path / "other"), archive)
    assert archive.read_text() == kept  # the archive kept before is untouched
    monkeypatch.undo()
    archive.unlink()
    monkeypatch.setattr(Path, "replace", disk_full)
    with pytest.raises(OSError):
        ctx.keep_run(make_run(tmp_path / "third"), archive)
    assert not archive.exists()


def test_forget_history_without_a_remembered_break_does_nothing(tmp_path) -> None:
    ctx = context(tmp_path)
    ctx.forget_history()  # reset without break: no MLflow, no gate reports touched
    assert ctx.private == {}


def test_an_edit_applies_once_or_fails_naming_the_file() -> None:
    from lab.context import edit_once

    assert edit_once("a = 1\nb = 2\n", "b = 2", "b = 3", "x.py") == "a = 1\nb = 3\n"
    with pytest.raises(RuntimeError, match=r"x\.py changed"):
        edit_once("a = 1\n", "b = 2", "b = 3", "x.py")  # gone: the fault would not ship
    with pytest.raises(RuntimeError, match=r"x\.py changed"):
        edit_once("b = 2\nb = 2\n", "b = 2", "b = 3", "x.py")  # twice: ambiguous
