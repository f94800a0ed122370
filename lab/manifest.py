"""The scenario manifest (``scenario.yaml``), the seeded variant and the text templates.

Owns: the manifest schema (validated by pydantic), the variant space a manifest declares, the
deterministic choice of one variant from a seed, and the ``{{ name }}`` substitution used by
briefs and interviewer notes.

Must not: read the catalogue folder (``catalogue``), hold state, or touch the stack.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Scalar = str | int | float | bool

IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")
BUILTIN_PROBES = ("stack", "git")


class Kind(StrEnum):
    """Incidents break the running stack; code reviews put a flawed change on a branch."""

    INCIDENT = "incident"
    CODE_REVIEW = "code_review"


class Seniority(StrEnum):
    JUNIOR = "junior"
    MID = "mid"
    SENIOR = "senior"


class Difficulty(StrEnum):
    EASY = "easy"
    MEDIUM = "medium"
    HARD = "hard"


class Family(StrEnum):
    """The part of the stack a scenario teaches, named for where its symptom shows, never for
    its cause. Lab mode's curriculum walks the families in this order (a week's path: data and
    features first, then serving, the model's lifecycle, monitoring, and a code review)."""

    FEATURES = "features"
    SERVING = "serving"
    MODELS = "models"
    MONITORING = "monitoring"
    REVIEW = "review"


class Choice(BaseModel):
    """One value a variant dimension can take; ``note`` says what it means (interviewer only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: Scalar
    note: str = ""


class Manifest(BaseModel):
    """What a scenario is. Everything here except ``variants``, ``concepts`` and ``tells`` may
    be shown to a candidate (``fraudlab lab list``); those three are interviewer material."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[0-9]{2}$", description="Two digits; the folder starts with it.")
    title: str = Field(
        min_length=10, max_length=90, description="Named for the symptom, never the cause."
    )
    kind: Kind
    difficulty: Difficulty
    seniority: list[Seniority] = Field(min_length=1, description="Levels the scenario suits.")
    time_box_minutes: int = Field(ge=5, le=240)
    components: list[str] = Field(min_length=1, description="Parts of the stack involved.")
    concepts: list[str] = Field(min_length=1, description="What it probes (interviewer only).")
    variants: dict[str, list[Choice]] = Field(
        description="Dimensions the seed picks from; each a list of values or {value, note}."
    )
    steady_state: list[str] = Field(
        default_factory=list,
        description="Probes that must pass before break and after reset: 'stack', 'git' or "
        "the name of a function in scenario.py returning Check or list[Check].",
    )
    tells: list[str] = Field(
        default_factory=list,
        description="Words that would give the cause away: never in candidate-facing output.",
    )
    family: Family | None = Field(
        default=None,
        description="Where lab mode's curriculum files it (features, serving, models, "
        "monitoring, review); when absent, code reviews go to 'review' and incidents last.",
    )
    baseline: bool = Field(
        default=False,
        description="Snapshot the embedded stack's state at break and restore it at reset "
        "(lab.baseline): data, feature store, registry aliases, serving release, "
        "live overrides; prediction records written meanwhile are archived. Incidents want it.",
    )

    @field_validator("variants", mode="before")
    @classmethod
    def _choices_from_scalars(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        return {
            name: [c if isinstance(c, Mapping) else {"value": c} for c in choices]
            if isinstance(choices, list)
            else choices
            for name, choices in value.items()
        }

    @model_validator(mode="after")
    def _check(self) -> Manifest:
        for name, choices in self.variants.items():
            if not IDENTIFIER.match(name):
                raise ValueError(f"variant dimension '{name}': use lower_snake_case")
            if not choices:
                raise ValueError(f"variant dimension '{name}' has no choices")
            values = [c.value for c in choices]
            if len(set(map(repr, values))) != len(values):
                raise ValueError(f"variant dimension '{name}' repeats a value: {values}")
        if self.variant_count() < 2:
            raise ValueError(
                "a scenario needs at least two variants, so that two candidates do not get the "
                "same answer: give some dimension of 'variants' two or more choices"
            )
        for probe in self.steady_state:
            if not IDENTIFIER.match(probe):
                raise ValueError(f"steady_state probe '{probe}' is not a function name")
        if len(set(self.seniority)) != len(self.seniority):
            raise ValueError("seniority lists a level twice")
        return self

    def variant_count(self) -> int:
        return math.prod(len(choices) for choices in self.variants.values())

    def pick_variant(self, seed: int) -> Variant:
        """The variant for ``seed``: seeds that differ modulo ``variant_count()`` always get
        different variants, and consecutive seeds walk the whole space in a scrambled order."""
        n = self.variant_count()
        # An affine map with a multiplier coprime to n is a bijection on 0..n-1.
        salt = sum(ord(c) * 131**i for i, c in enumerate(self.id)) % 1_000_003
        multiplier = next(m for m in range(7919 + salt % 997, 10**6) if math.gcd(m, n) == 1)
        index = (seed * multiplier + salt) % n
        picked: dict[str, Choice] = {}
        for name, choices in self.variants.items():
            index, position = divmod(index, len(choices))
            picked[name] = choices[position]
        return Variant(picked)

    def variant_from_values(self, values: Mapping[str, Scalar]) -> Variant:
        """Rebuild a variant stored as plain values (state files keep values, not notes)."""
        picked: dict[str, Choice] = {}
        for name, choices in self.variants.items():
            match = next((c for c in choices if c.value == values.get(name)), None)
            if match is None:
                raise ValueError(f"stored variant {dict(values)} does not fit this manifest")
            picked[name] = match
        return Variant(picked)


class Variant(Mapping[str, Scalar]):
    """The seeded choice of each variant dimension: ``variant["feature"]`` is the value,
    ``variant.note("feature")`` the interviewer's description of it."""

    def __init__(self, choices: Mapping[str, Choice]):
        self._choices = dict(choices)

    def __getitem__(self, name: str) -> Scalar:
        return self._choices[name].value

    def __iter__(self):
        return iter(self._choices)

    def __len__(self) -> int:
        return len(self._choices)

    def note(self, name: str) -> str:
        return self._choices[name].note

    def values(self) -> dict[str, Scalar]:  # type: ignore[override]
        return {name: choice.value for name, choice in self._choices.items()}

    def __repr__(self) -> str:
        return f"Variant({self.values()})"


TEMPLATE_FIELD = re.compile(
    r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z_][A-Za-z0-9_]*))?\s*\}\}"
)


def render(text: str, variant: Variant, seed: int, private: Mapping[str, Any]) -> str:
    """Fill ``{{ dimension }}``, ``{{ dimension.note }}``, ``{{ seed }}`` and
    ``{{ private.key }}`` (values the scenario stored while injecting, e.g. a branch name).

    An unknown name is an error rather than an empty string: a ticket with a hole in it is a
    bug the catalogue test must catch.
    """

    def substitute(match: re.Match[str]) -> str:
        name, attribute = match.group(1), match.group(2)
        if name == "seed" and attribute is None:
            return str(seed)
        if name == "private" and attribute is not None:
            if attribute not in private:
                raise KeyError(f"template asks for private.{attribute}, which inject never set")
            return str(private[attribute])
        if name in variant:
            if attribute is None:
                return str(variant[name])
            if attribute == "note":
                return variant.note(name)
        raise KeyError(f"unknown template field '{match.group(0)}'")

    return TEMPLATE_FIELD.sub(substitute, text)
