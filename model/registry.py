"""The model registry seam: MLflow runs, registered versions, aliases and model bundles.

Owns: how a trained model is stored (one MLflow run holding a ``bundle/`` folder with the
ONNX graph, the model spec and the evaluation material, plus an MLflow ONNX model registered
under ``Settings.model_name``) and how any process loads the model an alias points at.
Must not: train or evaluate (``pipelines.training``), or serve.

A bundle is everything serving needs and nothing it must re-derive: the ONNX file, the ordered
feature list, the feature service it was trained on, the transform version and the decision
threshold. Serving keeps the last bundle it loaded on disk, so it can start and keep serving
while the tracking server is down.

Integrity: ``bundle_sha256`` is one digest over every bundle file. Training records it on the
registered version (tag ``bundle_sha256``); ``download_bundle`` checks a cached copy against it
before trusting it (a changed file is named in a warning and the bundle fetched again) and
checks a fresh download too; ``last_loaded`` (the registry is unreachable) refuses a cached copy
whose files changed since it was downloaded (``BundleIntegrityError``).

Gate verdict: ``gate_verdict`` says whether a version passed the promotion gates, failed them,
or never went through them (a bootstrap model, an alias moved by hand).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from foundation.settings import Settings

BUNDLE_DIR = "bundle"
ONNX_FILE = "model.onnx"
NATIVE_FILE = "model.lgb.txt"
SPEC_FILE = "model_spec.json"
CHAMPION = "champion"
CHALLENGER = "challenger"
CACHE_META = "version.json"  # written beside a downloaded bundle's files: not part of the bundle
BUNDLE_SHA256_TAG = "bundle_sha256"  # model-version tag: bundle_sha256() of the registered files
# Model-version tag the promotion gates set on the version they judged: "passed" or "failed".
GATE_VERDICT_TAG = "gate_verdict"
GATE_REPORTS_DIR = "gates"  # gate reports on a version's run: gates/gates.json, gates/<stamp>/
GATE_REPORT_FILE = "gates.json"
PASSED, FAILED, NEVER_GATED = "passed", "failed", "never gated"
GateVerdict = Literal["passed", "failed", "never gated"]
UNVERIFIED = "nothing to check it against (downloaded before bundles were hashed)"

log = logging.getLogger("fraudlab.registry")


class BundleIntegrityError(RuntimeError):
    """A bundle whose files are not the ones registered (edited, truncated, swapped)."""


@dataclass(frozen=True)
class ModelBundle:
    """A registered model version as serving sees it."""

    name: str
    version: str
    run_id: str
    directory: Path
    spec: dict[str, Any]

    @property
    def onnx_path(self) -> Path:
        return self.directory / ONNX_FILE

    @property
    def feature_order(self) -> list[str]:
        return list(self.spec["feature_order"])

    @property
    def threshold(self) -> float:
        return float(self.spec["threshold"])

    @property
    def feature_service(self) -> str:
        return str(self.spec["feature_service"])


def client(settings: Settings):  # -> mlflow.MlflowClient
    import mlflow

    mlflow.set_tracking_uri(settings.tracking_uri)
    return mlflow.MlflowClient(tracking_uri=settings.tracking_uri)


def _alias_version(settings: Settings, alias: str):  # -> mlflow ModelVersion | None
    from mlflow.exceptions import MlflowException

    try:
        return client(settings).get_model_version_by_alias(settings.model_name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def resolve_alias(settings: Settings, alias: str = CHAMPION) -> tuple[str, str] | None:
    """(version, run_id) the alias points at, or None when the model or alias does not exist."""
    mv = _alias_version(settings, alias)
    return None if mv is None else (str(mv.version), str(mv.run_id))


# --- integrity ----------------------------------------------------------------------------------


def bundle_files(directory: Path) -> dict[str, str]:
    """sha256 of each file of a bundle, by its path inside the bundle (``CACHE_META`` aside)."""
    files = {}
    for path in sorted(directory.rglob("*")):
        name = path.relative_to(directory).as_posix()
        if path.is_file() and name != CACHE_META:
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            files[name] = digest.hexdigest()
    return files


def bundle_sha256(files: dict[str, str]) -> str:
    """One digest for a whole bundle (``bundle_files``' listing): what training records on the
    registered version and what every reader of a bundle recomputes before trusting it."""
    listing = json.dumps(dict(sorted(files.items())), separators=(",", ":"))
    return hashlib.sha256(listing.encode()).hexdigest()


def _differences(found: dict[str, str], recorded: dict[str, str]) -> list[str]:
    """What differs between two listings, file by file, as people read it."""
    described = []
    for name in sorted(found.keys() | recorded.keys()):
        if name not in found:
            described.append(f"{name} (missing)")
        elif name not in recorded:
            described.append(f"{name} (added)")
        elif found[name] != recorded[name]:
            described.append(f"{name} (changed)")
    return described


def cache_problems(directory: Path, expected_sha256: str | None = None) -> list[str]:
    """Why a cached bundle cannot be trusted (files named); empty when it can.

    Checked against ``expected_sha256`` (the registered version's ``bundle_sha256`` tag) when
    given, else against the listing recorded when it was downloaded. A cache with neither (one
    written before bundles were hashed) cannot be checked: "unverified".
    """
    meta = json.loads((directory / CACHE_META).read_text())
    recorded: dict[str, str] | None = meta.get("files")
    found = bundle_files(directory)
    expected = expected_sha256 or meta.get(BUNDLE_SHA256_TAG)
    if expected is None:
        return [UNVERIFIED]
    if bundle_sha256(found) == expected:
        return []
    if recorded is not None and bundle_sha256(recorded) == expected:
        return _differences(found, recorded)
    return ["the bundle's files (not the registered version's)"]


def download_bundle(
    settings: Settings,
    version: str,
    run_id: str,
    cache: Path,
    expected_sha256: str | None = None,
) -> ModelBundle:
    """A version's bundle in ``cache/<version>``: the cached copy when it checks out (see
    ``cache_problems``), else fetched from the registry (atomically) and checked.

    Raises ``BundleIntegrityError`` when even the registry's copy does not match
    ``expected_sha256``.
    """
    import mlflow

    # a progress bar per bundle download is noise in service logs and CLI output alike
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    target = cache / str(version)
    if (target / SPEC_FILE).exists() and (target / CACHE_META).exists():
        problems = cache_problems(target, expected_sha256)
        if not problems:
            return read_bundle(target)
        log.warning(
            "cached bundle of model version %s in %s cannot be trusted: %s; fetching it again"
            " from the registry",
            version,
            target,
            ", ".join(problems),
        )
    staging = cache / f".{version}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=BUNDLE_DIR, dst_path=str(staging)
    )
    files = bundle_files(staging / BUNDLE_DIR)
    digest = bundle_sha256(files)
    if expected_sha256 is not None and digest != expected_sha256:
        shutil.rmtree(staging, ignore_errors=True)
        raise BundleIntegrityError(
            f"model version {version}: the bundle in the registry (run {run_id}) hashes to"
            f" {digest[:12]}…, but training recorded {BUNDLE_SHA256_TAG}={expected_sha256[:12]}…:"
            " its artefacts changed after registration. Register a fresh model"
            " (`fraudlab train`) rather than serve this one."
        )
    shutil.rmtree(target, ignore_errors=True)
    (staging / BUNDLE_DIR).rename(target)
    shutil.rmtree(staging, ignore_errors=True)
    (target / CACHE_META).write_text(
        json.dumps(
            {
                "name": settings.model_name,
                "version": str(version),
                "run_id": run_id,
                BUNDLE_SHA256_TAG: digest,
                "files": files,
            },
            indent=2,
        )
    )
    return read_bundle(target)


def read_bundle(directory: Path) -> ModelBundle:
    meta = json.loads((directory / CACHE_META).read_text())
    spec = json.loads((directory / SPEC_FILE).read_text())
    return ModelBundle(meta["name"], meta["version"], meta["run_id"], directory, spec)


def load_alias(settings: Settings, cache: Path, alias: str = CHAMPION) -> ModelBundle:
    """The bundle ``alias`` points at, checked against its registered digest; raises
    LookupError when there is none."""
    mv = _alias_version(settings, alias)
    if mv is None:
        raise LookupError(
            f"model '{settings.model_name}' has no '{alias}' version in {settings.tracking_uri}:"
            " run `make train` (or `fraudlab train`) first"
        )
    expected = (mv.tags or {}).get(BUNDLE_SHA256_TAG)
    bundle = download_bundle(settings, str(mv.version), str(mv.run_id), cache, expected)
    (cache / f"{alias}.json").write_text(json.dumps({"version": bundle.version}))
    return bundle


def last_loaded(cache: Path, alias: str = CHAMPION) -> ModelBundle | None:
    """The bundle this cache last loaded for ``alias`` (used when MLflow is unreachable).

    Raises ``BundleIntegrityError`` when its files changed since they were downloaded: with no
    registry to fetch them again from, the cache is refused rather than trusted.
    """
    pointer = cache / f"{alias}.json"
    if not pointer.exists():
        return None
    version = json.loads(pointer.read_text())["version"]
    directory = cache / str(version)
    if not (directory / SPEC_FILE).exists():
        return None
    problems = cache_problems(directory)
    if problems == [UNVERIFIED]:
        log.warning("cached bundle of model version %s in %s: %s", version, directory, UNVERIFIED)
    elif problems:
        raise BundleIntegrityError(
            f"the cached bundle of model version {version} in {directory} changed since it was"
            f" downloaded: {', '.join(problems)}. Refusing to serve it while the registry is"
            " unreachable: start MLflow (`make up`) so that it is fetched again, or delete"
            f" {directory} and restart serving once the registry answers."
        )
    return read_bundle(directory)


# --- gate verdict -------------------------------------------------------------------------------


def gate_verdict(settings: Settings, version: str, http: Any = None) -> GateVerdict:
    """Whether ``version`` passed the promotion gates, failed them, or was "never gated".

    The version's ``gate_verdict`` tag when the gates set one; otherwise the newest gate report
    logged on the version's run (``gates/gates.json`` when a gated training run registered it,
    ``gates/<stamp>/gates.json`` for each ``fraudlab promote`` that judged it as challenger).
    None of either: the version was registered without gates (a bootstrap ``fraudlab train``)
    and, if it is the champion, reached the alias by hand.

    Read over MLflow's REST API (``http``: an ``httpx.Client``, one is opened when None) rather
    than ``MlflowClient``: ``make status`` asks, and importing MLflow's client costs a process
    ~10 s (its request-header plugins import Feast). Raises ``httpx.HTTPError`` when the
    tracking server does not answer.
    """
    import httpx

    api = http or httpx.Client(base_url=settings.tracking_uri, timeout=5.0)
    try:
        response = api.get(
            "/api/2.0/mlflow/model-versions/get",
            params={"name": settings.model_name, "version": str(version)},
        )
        response.raise_for_status()
        found = response.json()["model_version"]
        tags = {tag["key"]: tag["value"] for tag in found.get("tags", [])}
        if tags.get(GATE_VERDICT_TAG) in (PASSED, FAILED):
            return tags[GATE_VERDICT_TAG]
        report = _latest_gate_report(api, found["run_id"])
    finally:
        if http is None:
            api.close()
    if report is None:
        return NEVER_GATED
    return PASSED if report.get("passed") else FAILED


def _latest_gate_report(api: Any, run_id: str) -> dict[str, Any] | None:
    """The newest gate report logged on a run, or None."""

    def listing(path: str) -> list[dict[str, Any]]:
        response = api.get(
            "/api/2.0/mlflow/artifacts/list", params={"run_id": run_id, "path": path}
        )
        response.raise_for_status()
        return response.json().get("files", [])

    entries = listing(GATE_REPORTS_DIR)
    # promote's reports, gates/<UTC stamp>/gates.json: the stamps sort in time order
    newest = None
    for directory in sorted((e["path"] for e in entries if e.get("is_dir")), reverse=True):
        if any(e["path"] == f"{directory}/{GATE_REPORT_FILE}" for e in listing(directory)):
            newest = f"{directory}/{GATE_REPORT_FILE}"
            break
    top = f"{GATE_REPORTS_DIR}/{GATE_REPORT_FILE}"  # the report a gated training run came with
    if newest is None and any(e["path"] == top for e in entries):
        newest = top
    if newest is None:
        return None
    response = api.get("/get-artifact", params={"path": newest, "run_uuid": run_id})
    response.raise_for_status()
    return json.loads(response.text)


def gate_verdict_line(
    settings: Settings, version: str, verdict: GateVerdict | None = None
) -> tuple[GateVerdict, str]:
    """The verdict (asked for when not given) and one sentence for people: what it means for
    the champion."""
    verdict = verdict or gate_verdict(settings, version)
    text = {
        PASSED: f"champion v{version} passed the promotion gates",
        FAILED: (
            f"champion v{version} FAILED the promotion gates and serves anyway (alias moved by"
            " hand?): `fraudlab rollback`, or gate a fixed challenger with `fraudlab promote`"
        ),
        NEVER_GATED: (
            f"champion v{version} was never gated (a bootstrap model, or an alias moved by"
            " hand): `fraudlab train --no-promote` then `fraudlab promote` gates its successor"
        ),
    }[verdict]
    return verdict, text


def champion_gate_summary(settings: Settings) -> str:
    """One line on the champion's gate verdict for a report ("!" first when it did not pass);
    never raises (a registry that does not answer is said so)."""
    import httpx

    try:
        with httpx.Client(base_url=settings.tracking_uri, timeout=5.0) as api:
            response = api.get(
                "/api/2.0/mlflow/registered-models/alias",
                params={"name": settings.model_name, "alias": CHAMPION},
            )
            if response.status_code != 200:
                return f"! no '{CHAMPION}' for model '{settings.model_name}': nothing is gated"
            version = str(response.json()["model_version"]["version"])
            verdict = gate_verdict(settings, version, http=api)
    except (httpx.HTTPError, KeyError, ValueError) as exc:
        return f"champion gate verdict unknown: the registry did not answer ({exc})"
    sentence = gate_verdict_line(settings, version, verdict)[1]
    return sentence if verdict == PASSED else f"! {sentence}"


def version_tags(settings: Settings, version: str) -> dict[str, str]:
    """The tags of one registered version (lineage: transform version, feature service, ...)."""
    return dict(client(settings).get_model_version(settings.model_name, str(version)).tags or {})


def record_gate_verdict(settings: Settings, version: str, passed: bool) -> None:
    """Tag ``version`` with the promotion gates' verdict (read back by ``gate_verdict``)."""
    client(settings).set_model_version_tag(
        settings.model_name, str(version), GATE_VERDICT_TAG, PASSED if passed else FAILED
    )


def set_alias(settings: Settings, alias: str, version: str) -> None:
    client(settings).set_registered_model_alias(settings.model_name, alias, str(version))
