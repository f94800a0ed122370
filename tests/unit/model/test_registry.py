"""The registry seam: a bundle is checked before anyone trusts it, and a version's gate verdict
reads as passed, failed or never gated."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from model import registry
from tests.conftest import small_settings


def _write_bundle(directory: Path, threshold: float = 0.25) -> Path:
    directory.mkdir(parents=True)
    (directory / registry.SPEC_FILE).write_text(
        json.dumps({"threshold": threshold, "feature_order": ["a"], "feature_service": "svc"})
    )
    (directory / registry.ONNX_FILE).write_bytes(b"\x08\x01onnx-graph")
    (directory / "reference.parquet").write_bytes(b"PAR1" * 100)
    return directory


@pytest.fixture
def registered(tmp_path, monkeypatch):
    """A registered bundle (as MLflow's artifact store holds it), its recorded digest, and a
    stand-in for MLflow's download that copies it and counts the downloads."""
    import mlflow

    source = _write_bundle(tmp_path / "artifacts" / registry.BUNDLE_DIR)
    digest = registry.bundle_sha256(registry.bundle_files(source))
    downloads: list[str] = []

    def download_artifacts(run_id, artifact_path, dst_path):
        downloads.append(run_id)
        shutil.copytree(source, Path(dst_path) / artifact_path)
        return str(Path(dst_path) / artifact_path)

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", download_artifacts)
    settings = small_settings(tmp_path / "home")
    return SimpleNamespace(
        settings=settings,
        source=source,
        digest=digest,
        downloads=downloads,
        cache=tmp_path / "cache",
    )


def _tamper(bundle_dir: Path, threshold: float = 0.99) -> None:
    spec = json.loads((bundle_dir / registry.SPEC_FILE).read_text())
    spec["threshold"] = threshold
    (bundle_dir / registry.SPEC_FILE).write_text(json.dumps(spec))


def test_the_digest_covers_every_bundle_file_and_only_those(tmp_path) -> None:
    bundle = _write_bundle(tmp_path / "b")
    files = registry.bundle_files(bundle)
    assert sorted(files) == sorted([registry.SPEC_FILE, registry.ONNX_FILE, "reference.parquet"])
    before = registry.bundle_sha256(files)
    (bundle / registry.CACHE_META).write_text("{}")  # the cache's own metadata: not the bundle
    assert registry.bundle_sha256(registry.bundle_files(bundle)) == before
    _tamper(bundle, 0.25000001)
    assert registry.bundle_sha256(registry.bundle_files(bundle)) != before


def test_a_downloaded_bundle_is_cached_with_its_listing_and_reused(registered) -> None:
    r = registered
    first = registry.download_bundle(r.settings, "3", "run-3", r.cache, r.digest)
    meta = json.loads((first.directory / registry.CACHE_META).read_text())
    assert meta[registry.BUNDLE_SHA256_TAG] == r.digest
    assert set(meta["files"]) == {registry.SPEC_FILE, registry.ONNX_FILE, "reference.parquet"}
    registry.download_bundle(r.settings, "3", "run-3", r.cache, r.digest)
    assert len(r.downloads) == 1  # an intact cache is trusted


def test_an_edited_cached_threshold_is_named_and_fetched_again(registered, caplog) -> None:
    r = registered
    cached = registry.download_bundle(r.settings, "3", "run-3", r.cache, r.digest)
    _tamper(cached.directory)
    with caplog.at_level(logging.WARNING, logger="fraudlab.registry"):
        again = registry.download_bundle(r.settings, "3", "run-3", r.cache, r.digest)
    assert len(r.downloads) == 2
    assert again.threshold == 0.25  # the registered threshold, not the edited one
    assert "model_spec.json (changed)" in caplog.text
    # without the registry's digest (a version registered before the tag), the listing
    # recorded at download still catches the edit
    _tamper(again.directory)
    registry.download_bundle(r.settings, "3", "run-3", r.cache, None)
    assert len(r.downloads) == 3


def test_a_registry_copy_that_is_not_the_registered_one_is_refused(registered) -> None:
    r = registered
    _tamper(r.source)  # the artefacts changed after training recorded their digest
    with pytest.raises(registry.BundleIntegrityError, match="bundle_sha256"):
        registry.download_bundle(r.settings, "3", "run-3", r.cache, r.digest)
    assert not (r.cache / "3").exists()


def test_with_the_registry_down_a_tampered_cache_is_refused(registered) -> None:
    r = registered
    cached = registry.download_bundle(r.settings, "3", "run-3", r.cache, r.digest)
    (r.cache / f"{registry.CHAMPION}.json").write_text(json.dumps({"version": "3"}))
    assert registry.last_loaded(r.cache).threshold == 0.25  # intact: served
    _tamper(cached.directory)
    with pytest.raises(registry.BundleIntegrityError, match=r"model_spec\.json \(changed\)"):
        registry.last_loaded(r.cache)
    (cached.directory / "reference.parquet").unlink()
    with pytest.raises(registry.BundleIntegrityError, match=r"reference\.parquet \(missing\)"):
        registry.last_loaded(r.cache)


def test_load_alias_checks_against_the_versions_registered_digest(registered, monkeypatch):
    r = registered
    version = SimpleNamespace(
        version="3", run_id="run-3", tags={registry.BUNDLE_SHA256_TAG: r.digest}
    )
    monkeypatch.setattr(registry, "_alias_version", lambda settings, alias: version)
    cached = registry.load_alias(r.settings, r.cache)
    _tamper(cached.directory)
    assert registry.load_alias(r.settings, r.cache).threshold == 0.25
    assert len(r.downloads) == 2


def test_serving_does_not_start_on_a_tampered_cache_while_the_registry_is_down(
    registered, monkeypatch
) -> None:
    from serving import model as served

    r = registered
    settings = r.settings
    cache = settings.serving_cache_dir
    cached = registry.download_bundle(settings, "3", "run-3", cache, r.digest)
    (cache / f"{registry.CHAMPION}.json").write_text(json.dumps({"version": "3"}))
    _tamper(cached.directory)

    def unreachable(*args, **kwargs):
        raise ConnectionError("MLflow is down")

    monkeypatch.setattr(registry, "load_alias", unreachable)
    with pytest.raises(RuntimeError, match=r"MLflow is down.*model_spec\.json \(changed\)"):
        served.load_champion(settings)


# --- gate verdict ---------------------------------------------------------------------------


def _mlflow(tags: dict[str, str], reports: dict[str, bool], champion: str | None = "7"):
    """A stand-in for MLflow's REST API: version 7 (run r7) with ``tags``, and gate reports on
    its run by artifact path (``gates/<stamp>/gates.json`` or ``gates/gates.json``)."""

    def handle(request: httpx.Request) -> httpx.Response:
        path, params = request.url.path, request.url.params
        if path == "/api/2.0/mlflow/registered-models/alias":
            if champion is None:
                return httpx.Response(400, json={"error_code": "INVALID_PARAMETER_VALUE"})
            return httpx.Response(200, json={"model_version": {"version": champion}})
        if path == "/api/2.0/mlflow/model-versions/get":
            assert params["version"] == "7"
            entries = [{"key": k, "value": v} for k, v in tags.items()]
            return httpx.Response(200, json={"model_version": {"run_id": "r7", "tags": entries}})
        if path == "/api/2.0/mlflow/artifacts/list":
            assert params["run_id"] == "r7"
            under = params["path"]
            children = set()
            for report in reports:
                if report.startswith(under + "/"):
                    rest = report[len(under) + 1 :].split("/")
                    children.add((f"{under}/{rest[0]}", len(rest) > 1))
            files = [{"path": p, "is_dir": d} for p, d in sorted(children)]
            return httpx.Response(200, json={"files": files} if files else {})
        if path == "/get-artifact":
            return httpx.Response(200, text=json.dumps({"passed": reports[params["path"]]}))
        return httpx.Response(404)

    return httpx.MockTransport(handle)


@pytest.mark.parametrize(
    ("tags", "reports", "expected"),
    [
        ({registry.GATE_VERDICT_TAG: "passed"}, {}, "passed"),
        ({registry.GATE_VERDICT_TAG: "failed"}, {"gates/gates.json": True}, "failed"),
        ({}, {}, "never gated"),  # a bootstrap model, or an alias moved to an ungated one
        ({}, {"gates/gates.json": True}, "passed"),  # a gated training run, registered
        ({}, {"gates/20260301T000000000000Z/gates.json": False}, "failed"),
        (  # promote judged it twice: the newest report counts
            {},
            {
                "gates/gates.json": False,
                "gates/20260301T000000000000Z/gates.json": False,
                "gates/20260302T000000000000Z/gates.json": True,
            },
            "passed",
        ),
    ],
)
def test_gate_verdict(tmp_path, tags, reports, expected) -> None:
    settings = small_settings(tmp_path)
    with httpx.Client(transport=_mlflow(tags, reports), base_url="http://mlflow") as http:
        assert registry.gate_verdict(settings, "7", http=http) == expected


def test_the_champion_summary_warns_unless_it_passed(tmp_path, monkeypatch) -> None:
    settings = small_settings(tmp_path)

    def summary(**world) -> str:
        transport = _mlflow(**world)
        real = httpx.Client

        def client(**kwargs):
            return real(transport=transport, **kwargs)

        monkeypatch.setattr(httpx, "Client", client)
        try:
            return registry.champion_gate_summary(settings)
        finally:
            monkeypatch.setattr(httpx, "Client", real)

    assert summary(tags={}, reports={"gates/gates.json": True}).startswith("champion v7 passed")
    assert summary(tags={}, reports={}).startswith("! champion v7 was never gated")
    assert "FAILED" in summary(tags={registry.GATE_VERDICT_TAG: "failed"}, reports={})
    assert summary(tags={}, reports={}, champion=None).startswith("! no 'champion'")


def test_the_champion_summary_says_when_the_registry_does_not_answer(tmp_path) -> None:
    from tests.conftest import free_port

    settings = small_settings(tmp_path, mlflow_port=free_port())
    assert "unknown" in registry.champion_gate_summary(settings)
