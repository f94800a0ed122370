"""The stack's live configuration overrides: ``<home>/overrides.env``.

Owns: reading, validating and writing the overrides file that every process of one stack reads
when it starts (``foundation.settings`` ranks it above the environment), and describing where
each effective setting comes from (``fraudlab config``). An operator's switch without a code
change or a redeploy — and, like every such switch, something to check when a stack misbehaves.

Must not: restart anything (a running process keeps the settings it started with; the CLI says
which to restart), or write ``.env``, which belongs to the person running the stack.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from foundation.settings import OVERRIDES_FILE, PREFIX, Settings, read_overrides

# Who reads a setting only at start, and so needs a restart for a change to apply.
STARTUP_ONLY_HINT = (
    "processes started from now on use it; serving and the traffic simulator read their "
    "settings at start (`fraudlab restart serving`)"
)


class ConfigError(ValueError):
    """An override that names no setting or does not parse; the message says which."""


@dataclass(frozen=True)
class Effective:
    name: str
    value: object
    source: str  # "override", "environment" (variables or .env) or "default"


def overrides_path(settings: Settings) -> Path:
    return settings.home.resolve() / OVERRIDES_FILE


def parse_assignments(assignments: Iterable[str]) -> dict[str, str]:
    """``["psi_bins=50", "FRAUDLAB_ORT_THREADS=2"]`` → ``{"psi_bins": "50", "ort_threads": "2"}``."""
    out = {}
    for text in assignments:
        name, sep, value = text.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"'{text}': write NAME=VALUE (e.g. psi_alert=0.25)")
        out[_field_name(name)] = value.strip()
    return out


def _field_name(name: str) -> str:
    name = name.strip()
    if name.upper().startswith(PREFIX):
        name = name[len(PREFIX) :]
    name = name.lower()
    if name not in Settings.model_fields or name == "home":
        raise ConfigError(
            f"'{name}' is not a setting that can be overridden (`fraudlab config --all` lists them)"
        )
    return name


def _validate(name: str, raw: str) -> None:
    try:
        TypeAdapter(Settings.model_fields[name].annotation).validate_python(raw)
    except ValidationError as exc:
        problem = exc.errors()[0]["msg"]
        raise ConfigError(f"{name}={raw!r}: {problem}") from None


def _write(settings: Settings, values: Mapping[str, str]) -> Path:
    path = overrides_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Live overrides of this fraudlab stack: every process reads them when it starts,",
        "# above FRAUDLAB_* variables and .env. Edit with `fraudlab config set|unset`.",
        f"# Last written {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC.",
    ]
    lines += [f"{PREFIX}{name.upper()}={value}" for name, value in sorted(values.items())]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path


def set_overrides(settings: Settings, values: Mapping[str, str]) -> Path:
    """Add or change overrides (validated first: nothing is written if one is wrong)."""
    checked = {_field_name(name): value for name, value in values.items()}
    for name, value in checked.items():
        _validate(name, value)
    return _write(settings, {**read_overrides(settings.home), **checked})


def unset_overrides(settings: Settings, names: Iterable[str]) -> list[str]:
    """Remove overrides; returns the names that were set (the file goes when it empties)."""
    current = read_overrides(settings.home)
    removed = [n for n in (_field_name(name) for name in names) if n in current]
    remaining = {k: v for k, v in current.items() if k not in removed}
    if remaining:
        _write(settings, remaining)
    else:
        overrides_path(settings).unlink(missing_ok=True)
    return removed


def effective(settings: Settings) -> list[Effective]:
    """Every setting with its value and where it came from."""
    rows = []
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if name in settings.overridden:
            source = "override"
        elif name in settings.model_fields_set:
            source = "environment"
        else:
            source = "default"
        rows.append(Effective(name, value, source))
    return rows
