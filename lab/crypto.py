"""Encryption for the scenario lab: keys, passphrases and the sealed-file format.

Owns: Fernet keys (a random key file while the lab is unsealed, a key derived from the
interviewer's passphrase with scrypt while it is sealed), the check that a passphrase is the
right one, and the on-disk format of a sealed file (a magic line, then a Fernet token).

Also owns the record's sealed boxes: the interview record is appended to by commands that have
no key (``make verify`` and the candidate's ``fraudlab`` commands while the lab is sealed), so
it is encrypted to a public key (X25519, an ephemeral key per box, HKDF, Fernet) whose private
half is kept under the state's key — the passphrase's while sealed.

Must not: know what a scenario or the state is; decide when to seal (``engine`` does).

What this protects, honestly: files are not plain text, so nothing greps, cats or indexes a
scenario's name or cause. A key file sits next to the data it opens while the lab is unsealed;
only the sealed mode (the key exists nowhere but in the interviewer's head) resists a curious
user with a shell.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

SEALED_MAGIC = b"fraudlab-sealed/1\n"
# scrypt cost: ~0.1 s and 32 MiB per derivation here; an offline guesser pays the same per try.
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
PASSPHRASE_CHECK = b"fraudlab lab passphrase check"
MIN_PASSPHRASE_LENGTH = 8


class WrongPassphrase(Exception):
    """The passphrase does not open what was sealed with another one."""


def new_key() -> bytes:
    return Fernet.generate_key()


def new_salt() -> bytes:
    return os.urandom(16)


def derive_key(
    passphrase: str, salt: bytes, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P
) -> bytes:
    """A Fernet key from a passphrase (scrypt, 32 bytes, urlsafe base64 as Fernet wants)."""
    raw = Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode())
    return base64.urlsafe_b64encode(raw)


def encrypt(key: bytes, data: bytes) -> bytes:
    return Fernet(key).encrypt(data)


def decrypt(key: bytes, token: bytes) -> bytes:
    try:
        return Fernet(key).decrypt(token)
    except InvalidToken:
        raise WrongPassphrase("this key or passphrase does not open the data") from None


def passphrase_check(key: bytes) -> str:
    """A token that only the right key opens, stored to tell a wrong passphrase early."""
    return encrypt(key, PASSPHRASE_CHECK).decode()


def key_opens(key: bytes, check: str) -> bool:
    try:
        return decrypt(key, check.encode()) == PASSPHRASE_CHECK
    except WrongPassphrase:
        return False


def is_sealed(data: bytes) -> bool:
    return data.startswith(SEALED_MAGIC)


def seal_bytes(key: bytes, plaintext: bytes) -> bytes:
    return SEALED_MAGIC + encrypt(key, plaintext) + b"\n"


def unseal_bytes(key: bytes, data: bytes) -> bytes:
    if not is_sealed(data):
        return data
    return decrypt(key, data[len(SEALED_MAGIC) :].strip())


BOX_INFO = b"fraudlab lab record box"
RAW = serialization.Encoding.Raw


def new_box_keys() -> tuple[bytes, bytes]:
    """A key pair for sealed boxes: (private, public), 32 raw bytes each."""
    private = X25519PrivateKey.generate()
    return (
        private.private_bytes(RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption()),
        private.public_key().public_bytes(RAW, serialization.PublicFormat.Raw),
    )


def _box_key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    raw = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=BOX_INFO + ephemeral + recipient
    ).derive(shared)
    return base64.urlsafe_b64encode(raw)


def seal_box(public: bytes, data: bytes) -> bytes:
    """``data`` encrypted so that only the private half of ``public`` opens it."""
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = ephemeral.public_key().public_bytes(RAW, serialization.PublicFormat.Raw)
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(public))
    token = Fernet(_box_key(shared, ephemeral_public, public)).encrypt(data)
    return ephemeral_public + base64.urlsafe_b64decode(token)


def open_box(private: bytes, box: bytes) -> bytes:
    key = X25519PrivateKey.from_private_bytes(private)
    public = key.public_key().public_bytes(RAW, serialization.PublicFormat.Raw)
    ephemeral_public, token = box[:32], base64.urlsafe_b64encode(box[32:])
    shared = key.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
    try:
        return Fernet(_box_key(shared, ephemeral_public, public)).decrypt(token)
    except InvalidToken:
        raise WrongPassphrase("this key does not open the record") from None


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` readable by its owner only, atomically (a crash leaves old or new)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    tmp.replace(path)
