"""The lab state: encrypted at rest, under a key file or a passphrase, and the capsule."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from lab import crypto
from lab.state import ActiveScenario, LabStore


def active() -> ActiveScenario:
    return ActiveScenario(
        scenario_id="01",
        seed=7,
        variant={"colour": "crimson"},
        private={"branch": "toy/secret-branch"},
        log="injected crimson",
        started_at=datetime(2026, 11, 23, 9, 30, tzinfo=UTC),
    )


def test_state_round_trips_and_is_not_plain_text_on_disk(tmp_path) -> None:
    store = LabStore(tmp_path)
    key = store.unsealed_key()
    store.save(active(), key)
    raw = store.state_file.read_bytes()
    for secret in (b"crimson", b"secret-branch", b"scenario_id", b'"01"'):
        assert secret not in raw
    assert store.load(key) == active()
    assert store.active()
    assert oct(store.state_file.stat().st_mode & 0o777) == "0o600"
    assert oct(store.key_file.stat().st_mode & 0o777) == "0o600"


def test_another_key_cannot_open_the_state(tmp_path) -> None:
    store = LabStore(tmp_path)
    store.save(active(), store.unsealed_key())
    with pytest.raises(crypto.WrongPassphrase):
        store.load(crypto.new_key())


def test_a_sealed_store_opens_only_with_its_passphrase(tmp_path) -> None:
    store = LabStore(tmp_path)
    key = store.new_seal("the right passphrase", files=["broken_scenarios/x/INTERVIEWER.md"])
    store.save(active(), key)
    assert store.sealed()
    assert store.sealed_key("the right passphrase") == key
    with pytest.raises(crypto.WrongPassphrase):
        store.sealed_key("the wrong passphrase")
    with pytest.raises(RuntimeError, match="sealed"):
        store.unsealed_key()
    assert store.load(store.sealed_key("the right passphrase")) == active()
    assert store.seal_info().files == ["broken_scenarios/x/INTERVIEWER.md"]


def test_sealed_files_carry_a_marker_and_round_trip(tmp_path) -> None:
    key = crypto.new_key()
    sealed = crypto.seal_bytes(key, b"the cause is crimson\n")
    assert crypto.is_sealed(sealed) and b"crimson" not in sealed
    assert crypto.unseal_bytes(key, sealed) == b"the cause is crimson\n"
    assert crypto.unseal_bytes(key, b"plain text stays") == b"plain text stays"
    with pytest.raises(crypto.WrongPassphrase):
        crypto.unseal_bytes(crypto.new_key(), sealed)


def test_the_capsule_keeps_what_verify_needs_but_not_the_log(tmp_path) -> None:
    store = LabStore(tmp_path)
    store.write_capsule(active(), "/catalogue/01-x", {"scenario.py": b"def verify(): ..."})
    assert b"crimson" not in store.capsule_file.read_bytes()
    state, folder, files = store.read_capsule()
    assert state.variant == {"colour": "crimson"} and state.log == ""
    assert folder == "/catalogue/01-x" and files == {"scenario.py": b"def verify(): ..."}
    store.clear()
    assert store.read_capsule() is None and not store.active()
