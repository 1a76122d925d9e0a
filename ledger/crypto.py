"""Hashing and signatures (DESIGN §2).

``H`` is the chain's hash, ``sha256`` or ``sm3``, fixed in the genesis file. No function here
has a default algorithm: the chain's ``hash_alg`` is always passed, so an SM3 chain can never be
hashed with SHA-256 by accident. Content digests of documents and evidence are always SHA-256
(:func:`sha256`), so that a browser can compute them.

Signatures are Ed25519 (RFC 8032) verified with libsodium's strict checks: a non-canonical
``S``, a small-order public key or ``R`` and a non-canonical public key are all refused. Every
signed message is ``tag + chain_id + canonical(x)`` (:func:`signing_message`), with one tag per
kind of object, so a signature made for one purpose or one chain is valid for no other.

Keys sit behind :class:`Signer` so that SM2 or a hardware key can come later; a key file
(hex of the 32-byte seed, mode 0600) is the only implementation now.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import nacl.exceptions
import nacl.signing
from cryptography.hazmat.primitives import hashes

from ledger.encoding import Value, canonical
from ledger.errors import HashAlgorithmError, KeyMaterialError, SignatureError

HashAlg = Literal["sha256", "sm3"]
HASH_ALGS: tuple[HashAlg, ...] = ("sha256", "sm3")
SIG_ALGS = ("ed25519",)

TAG_ENTRY = b"courtledger:entry:v1\x00"
TAG_BLOCK = b"courtledger:block:v1\x00"
TAG_CHECKPOINT = b"courtledger:checkpoint:v1\x00"
TAG_MEMBERSHIP = b"courtledger:membership:v1\x00"
TAGS = (TAG_ENTRY, TAG_BLOCK, TAG_CHECKPOINT, TAG_MEMBERSHIP)

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
SEED_SIZE = 32
DIGEST_SIZE = 32


def _sm3(data: bytes) -> bytes:
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


_HASHERS: dict[str, Callable[[bytes], bytes]] = {"sha256": _sha256, "sm3": _sm3}


def check_hash_alg(alg: str) -> HashAlg:
    """Return ``alg`` if it names a supported chain hash, else raise :class:`HashAlgorithmError`."""
    if alg not in _HASHERS:
        raise HashAlgorithmError(f"unknown hash algorithm {alg!r}; expected one of {HASH_ALGS}")
    return alg  # type: ignore[return-value]


def hasher(alg: str) -> Callable[[bytes], bytes]:
    """Return the digest function of the chain hash ``alg`` (32-byte output)."""
    return _HASHERS[check_hash_alg(alg)]


def H(alg: str, data: bytes) -> bytes:  # noqa: N802 - DESIGN's name for the chain hash
    """Hash ``data`` with the chain hash ``alg``."""
    return hasher(alg)(data)


def hash_object(alg: str, obj: Value) -> bytes:
    """``H(canonical(obj))``: the identity of a header, payload or consortium map."""
    return H(alg, canonical(obj))


def sha256(data: bytes) -> bytes:
    """SHA-256 of document or evidence content (always SHA-256, whatever the chain hash)."""
    return _sha256(data)


def signing_message(tag: bytes, chain_id: bytes, obj: Value) -> bytes:
    """The exact bytes signed for ``obj``: ``tag + chain_id + canonical(obj)``."""
    if tag not in TAGS:
        raise ValueError(f"unknown signature tag {tag!r}")
    return tag + bytes(chain_id) + canonical(obj)


@runtime_checkable
class Signer(Protocol):
    """Something that holds a private key and signs domain-separated messages."""

    def public_key(self) -> bytes:
        """The 32-byte public key."""
        ...

    def sign(self, tag: bytes, msg: bytes) -> bytes:
        """Sign ``tag + msg`` and return the 64-byte signature."""
        ...


class Ed25519Signer:
    """An Ed25519 key held in memory (loaded from a key file or generated)."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_SIZE:
            raise KeyMaterialError(f"an Ed25519 seed is {SEED_SIZE} bytes, got {len(seed)}")
        self._key = nacl.signing.SigningKey(seed)
        self._public = bytes(self._key.verify_key)

    @classmethod
    def generate(cls) -> Ed25519Signer:
        """A new key from the operating system's randomness."""
        return cls(os.urandom(SEED_SIZE))

    @classmethod
    def from_file(cls, path: str | Path) -> Ed25519Signer:
        """Load a key file: the hex of the 32-byte seed, optionally followed by a newline."""
        path = Path(path)
        try:
            text = path.read_text(encoding="ascii").strip()
        except OSError as exc:
            raise KeyMaterialError(f"cannot read key file {path}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise KeyMaterialError(f"key file {path} is not hex text") from exc
        try:
            seed = bytes.fromhex(text)
        except ValueError as exc:
            raise KeyMaterialError(f"key file {path} is not hex") from exc
        return cls(seed)

    def save(self, path: str | Path) -> None:
        """Write the seed as hex to a new file readable only by its owner (0600)."""
        path = Path(path)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError as exc:
            # O_EXCL: a key file is never overwritten (that would lose a court's key).
            raise KeyMaterialError(f"key file {path} already exists; not overwriting it") from exc
        except OSError as exc:
            raise KeyMaterialError(f"cannot create key file {path}: {exc.strerror}") from exc
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(bytes(self._key).hex() + "\n")

    def public_key(self) -> bytes:
        return self._public

    def sign(self, tag: bytes, msg: bytes) -> bytes:
        if tag not in TAGS:
            raise ValueError(f"unknown signature tag {tag!r}")
        return bytes(self._key.sign(tag + msg).signature)


def sign_object(signer: Signer, tag: bytes, chain_id: bytes, obj: Value) -> bytes:
    """Sign ``obj`` for this chain under ``tag``."""
    return signer.sign(tag, bytes(chain_id) + canonical(obj))


def verify_signature(public_key: bytes, message: bytes, sig: bytes) -> None:
    """Verify an Ed25519 signature over ``message`` strictly; raise :class:`SignatureError`.

    ``message`` is the whole signed message (see :func:`signing_message`).
    """
    if not isinstance(public_key, bytes) or len(public_key) != PUBLIC_KEY_SIZE:
        raise SignatureError(f"a public key is {PUBLIC_KEY_SIZE} bytes")
    if not isinstance(sig, bytes) or len(sig) != SIGNATURE_SIZE:
        raise SignatureError(f"a signature is {SIGNATURE_SIZE} bytes")
    try:
        nacl.signing.VerifyKey(public_key).verify(message, sig)
    except nacl.exceptions.BadSignatureError as exc:
        raise SignatureError("signature does not verify") from exc
    except (
        nacl.exceptions.ValueError,
        nacl.exceptions.TypeError,
        nacl.exceptions.RuntimeError,
    ) as exc:
        raise SignatureError(f"unusable public key or signature: {exc}") from exc


def verify_object(public_key: bytes, tag: bytes, chain_id: bytes, obj: Value, sig: bytes) -> None:
    """Verify a signature made by :func:`sign_object`; raise :class:`SignatureError`."""
    verify_signature(public_key, signing_message(tag, chain_id, obj), sig)
