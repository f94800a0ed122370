"""The catalogue keeps its shape: every folder is a complete, valid scenario whose candidate
material names neither the scenario nor its cause. Fast: nothing is injected."""

from __future__ import annotations

import re

import pytest
import yaml

from foundation.settings import REPO_ROOT
from lab.catalogue import (
    BRIEF,
    FOLDER,
    MANIFEST,
    MODULE,
    NOTE_SECTIONS,
    NOTES,
    REQUIRED_FILES,
    Catalogue,
    InterviewerNotes,
    catalogue_root,
    load_module,
)
from lab.manifest import Manifest, render

ROOT = catalogue_root(REPO_ROOT)
SCENARIOS = Catalogue(ROOT).scenarios()
IDS = [s.folder.name for s in SCENARIOS]


class Placeholders(dict):
    """Stands in for what inject stores (``{{ private.x }}`` renders as ``<x>``)."""

    def __contains__(self, key: object) -> bool:
        return True

    def __missing__(self, key: str) -> str:
        return f"<{key}>"


def seeds(scenario) -> range:
    return range(min(scenario.manifest.variant_count(), 12))


def test_every_folder_is_a_scenario_or_a_template() -> None:
    for path in ROOT.iterdir():
        if path.is_dir():
            assert FOLDER.match(path.name) or path.name.startswith("_"), (
                f"{path.name}: scenario folders are <NN>-<symptom-slug>; templates start with _"
            )
    for scenario in SCENARIOS:
        for name in REQUIRED_FILES:
            assert (scenario.folder / name).is_file(), f"{scenario.folder.name}: no {name}"
    assert len({s.id for s in SCENARIOS}) == len(SCENARIOS)
    assert (ROOT / "AUTHORING.md").is_file()


def test_the_template_is_complete_and_its_manifest_valid() -> None:
    template = ROOT / "_template"
    for name in REQUIRED_FILES:
        assert (template / name).is_file(), name
    Manifest.model_validate(yaml.safe_load((template / MANIFEST).read_text()))
    load_module((template / MODULE).read_text(), "_template/scenario.py")
    notes = InterviewerNotes.parse((template / NOTES).read_text())
    assert list(notes.sections)[: len(NOTE_SECTIONS)] == list(NOTE_SECTIONS)


@pytest.mark.parametrize("folder", IDS)
def test_the_module_defines_the_contract_and_its_probes(folder: str) -> None:
    scenario = next(s for s in SCENARIOS if s.folder.name == folder)
    module = scenario.module()
    for probe in scenario.manifest.steady_state:
        assert probe in ("stack", "git") or callable(getattr(module, probe, None)), probe


@pytest.mark.parametrize("folder", IDS)
def test_interviewer_notes_have_every_section_a_ladder_and_a_rubric(folder: str) -> None:
    scenario = next(s for s in SCENARIOS if s.folder.name == folder)
    for seed in seeds(scenario):
        variant = scenario.manifest.pick_variant(seed)
        notes = InterviewerNotes.parse(render(scenario.text(NOTES), variant, seed, Placeholders()))
        assert list(notes.sections) == list(NOTE_SECTIONS), "sections missing or out of order"
        assert len(notes.hints) >= 3, "a ladder needs at least three rungs"
        rubric = notes.sections["Rubric"].lower()
        for level in ("junior", "mid", "senior"):
            assert level in rubric, f"the rubric says nothing about {level}"
        for dimension in ("detection", "localisation", "root cause", "mitigation"):
            assert dimension in rubric, f"the rubric does not grade {dimension}"
        assert re.search(r"^\s*-\s+\S", notes.sections["Follow-up questions"], re.MULTILINE)


@pytest.mark.parametrize("folder", IDS)
def test_briefs_render_for_every_seed_and_never_name_the_scenario_or_its_cause(
    folder: str,
) -> None:
    scenario = next(s for s in SCENARIOS if s.folder.name == folder)
    manifest = scenario.manifest
    root_cause = InterviewerNotes.parse(scenario.text(NOTES)).sections["Root cause"]
    cause_lines = [line.strip() for line in root_cause.splitlines() if len(line.strip()) >= 40]
    for tell in manifest.tells:
        assert tell.lower() not in manifest.title.lower(), f"the title says {tell!r}"
    for seed in seeds(scenario):
        variant = manifest.pick_variant(seed)
        brief = render(scenario.text(BRIEF), variant, seed, Placeholders()).lower()
        forbidden = [scenario.folder.name, manifest.title, *manifest.tells]
        forbidden += [str(v) for v in variant.values().values() if isinstance(v, str)]
        for word in forbidden:
            assert word.lower() not in brief, f"seed {seed}: the brief says {word!r}"
        for line in cause_lines:
            assert line.lower() not in brief, f"the brief repeats the interviewer notes: {line}"


@pytest.mark.parametrize("folder", IDS)
def test_two_seeds_give_two_different_answers(folder: str) -> None:
    manifest = next(s for s in SCENARIOS if s.folder.name == folder).manifest
    assert manifest.pick_variant(1).values() != manifest.pick_variant(2).values()


@pytest.mark.parametrize("folder", IDS)
def test_what_the_lab_adds_to_a_ticket_and_a_verify_names_no_scenario(folder: str) -> None:
    """The record's footer under every ticket and verify's level line are the same for every
    scenario: neither may say a word that gives one away."""
    from lab.context import Level
    from lab.engine import RECORDED, RECORDED_COMMANDS

    manifest = next(s for s in SCENARIOS if s.folder.name == folder).manifest
    added = " ".join(
        [RECORDED.format(commands=RECORDED_COMMANDS), "reached: none yet", *Level]
    ).lower()
    forbidden = [folder, manifest.title, *manifest.tells]
    forbidden += [
        str(c.value) for cs in manifest.variants.values() for c in cs if isinstance(c.value, str)
    ]
    for word in forbidden:
        assert word.lower() not in added, f"the lab's own words say {word!r}"
