"""Hashes and strict Ed25519 (DESIGN §2, RFC 8032 with libsodium's checks)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ledger.crypto import (
    TAG_BLOCK,
    TAG_CHECKPOINT,
    TAG_ENTRY,
    TAG_MEMBERSHIP,
    Ed25519Signer,
    H,
    Signer,
    check_hash_alg,
    hash_object,
    hasher,
    sha256,
    sign_object,
    signing_message,
    verify_object,
    verify_signature,
)
from ledger.encoding import canonical
from ledger.errors import HashAlgorithmError, KeyMaterialError, SignatureError

# Group order of edwards25519 (RFC 8032 §5.1: L).
L = 2**252 + 27742317777372353535851937790883648493

CHAIN = bytes(range(32))
OTHER_CHAIN = bytes(range(1, 33))


# ------------------------------------------------------------------------------------ hashes


def test_known_vectors() -> None:
    # FIPS 180-2 "abc" and GB/T 32905-2016 (SM3) Appendix A "abc".
    assert H("sha256", b"abc").hex() == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert H("sm3", b"abc").hex() == (
        "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    )
    assert sha256(b"abc") == H("sha256", b"abc")
    assert len(hasher("sm3")(b"")) == 32


@pytest.mark.parametrize("alg", ["md5", "SHA256", "sha-256", "", "sm2"])
def test_unknown_hash_refused(alg: str) -> None:
    with pytest.raises(HashAlgorithmError):
        check_hash_alg(alg)
    with pytest.raises(HashAlgorithmError):
        H(alg, b"x")


def test_hash_object() -> None:
    obj = {"b": 1, "a": [b"x"]}
    for alg in ("sha256", "sm3"):
        assert hash_object(alg, obj) == H(alg, canonical(obj))
    assert hash_object("sha256", obj) != hash_object("sm3", obj)


# ---------------------------------------------------------------------------- RFC 8032 vector


def test_rfc8032_test_1() -> None:
    # RFC 8032 §7.1, TEST 1 (empty message).
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    public = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    sig = bytes.fromhex(
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )
    signer = Ed25519Signer(seed)
    assert signer.public_key() == public
    verify_signature(public, b"", sig)
    assert isinstance(signer, Signer)


# ---------------------------------------------------------------------------------- strictness


def _signed(msg: bytes = b"hello") -> tuple[bytes, bytes, bytes]:
    signer = Ed25519Signer(bytes(32))
    sig = sign_object(signer, TAG_ENTRY, CHAIN, msg)
    return signer.public_key(), signing_message(TAG_ENTRY, CHAIN, msg), sig


def test_valid_signature_verifies() -> None:
    pk, message, sig = _signed()
    verify_signature(pk, message, sig)


def test_non_canonical_s_refused() -> None:
    # S + L is the same scalar mod L: lax verifiers accept it (signature malleability);
    # RFC 8032 §5.1.7 and libsodium require 0 ≤ S < L.
    pk, message, sig = _signed()
    s = int.from_bytes(sig[32:], "little")
    malleated = sig[:32] + (s + L).to_bytes(32, "little")
    with pytest.raises(SignatureError):
        verify_signature(pk, message, malleated)


@pytest.mark.parametrize(
    "small_order_key",
    [
        "0100000000000000000000000000000000000000000000000000000000000000",  # identity
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # order 2
        "0000000000000000000000000000000000000000000000000000000000000000",  # order 4
        "0000000000000000000000000000000000000000000000000000000000000080",  # order 4
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
    ],
)
def test_small_order_keys_refused(small_order_key: str) -> None:
    # With A of small order, R = identity and S = 0 "verify" for every message under the
    # cofactored equation; libsodium refuses such keys outright.
    pk = bytes.fromhex(small_order_key)
    forged = bytes.fromhex("01" + "00" * 31) + bytes(32)
    with pytest.raises(SignatureError):
        verify_signature(pk, b"any message at all", forged)


def test_small_order_r_refused() -> None:
    pk, message, _ = _signed()
    sig = bytes.fromhex("01" + "00" * 31) + bytes(32)
    with pytest.raises(SignatureError):
        verify_signature(pk, message, sig)


def test_non_canonical_public_key_refused() -> None:
    # y = p (2^255 − 19) encodes y = 0 non-canonically.
    pk = bytes.fromhex("edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
    with pytest.raises(SignatureError):
        verify_signature(pk, b"m", bytes(64))


def test_every_bit_flip_refused() -> None:
    pk, message, sig = _signed()
    for i in range(0, len(sig) * 8, 7):
        bad = bytearray(sig)
        bad[i // 8] ^= 1 << (i % 8)
        with pytest.raises(SignatureError):
            verify_signature(pk, message, bytes(bad))


@pytest.mark.parametrize(
    "pk,sig",
    [
        (b"x" * 31, b"s" * 64),
        (b"x" * 32, b"s" * 63),
        (bytearray(32), bytes(64)),
        ("k" * 32, bytes(64)),
    ],
)
def test_malformed_sizes_refused(pk: object, sig: bytes) -> None:
    with pytest.raises(SignatureError):
        verify_signature(pk, b"m", sig)  # type: ignore[arg-type]


# ------------------------------------------------------------------- domain separation


def test_signature_for_another_chain_refused() -> None:
    signer = Ed25519Signer.generate()
    obj = {"a": 1}
    sig = sign_object(signer, TAG_ENTRY, CHAIN, obj)
    verify_object(signer.public_key(), TAG_ENTRY, CHAIN, obj, sig)
    with pytest.raises(SignatureError):
        verify_object(signer.public_key(), TAG_ENTRY, OTHER_CHAIN, obj, sig)


@pytest.mark.parametrize("other", [TAG_BLOCK, TAG_CHECKPOINT, TAG_MEMBERSHIP])
def test_signature_for_another_tag_refused(other: bytes) -> None:
    signer = Ed25519Signer.generate()
    sig = sign_object(signer, TAG_ENTRY, CHAIN, {"a": 1})
    with pytest.raises(SignatureError):
        verify_object(signer.public_key(), other, CHAIN, {"a": 1}, sig)


def test_tags_are_distinct_and_terminated() -> None:
    tags = [TAG_ENTRY, TAG_BLOCK, TAG_CHECKPOINT, TAG_MEMBERSHIP]
    assert len(set(tags)) == 4
    # NUL-terminated, so no tag is a prefix of another tag followed by chain-id bytes.
    assert all(t.endswith(b"\x00") and t.count(b"\x00") == 1 for t in tags)
    assert signing_message(TAG_BLOCK, CHAIN, 1) == TAG_BLOCK + CHAIN + b"\x01"


def test_unknown_tag_refused() -> None:
    signer = Ed25519Signer.generate()
    with pytest.raises(ValueError):
        signer.sign(b"courtledger:other:v1\x00", b"m")
    with pytest.raises(ValueError):
        signing_message(b"nope", CHAIN, 1)


# ---------------------------------------------------------------------------------- key files


def test_key_file_round_trip(tmp_path: Path) -> None:
    signer = Ed25519Signer.generate()
    path = tmp_path / "a.key"
    signer.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert Ed25519Signer.from_file(path).public_key() == signer.public_key()


def test_key_file_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "a.key"
    Ed25519Signer.generate().save(path)
    before = path.read_text()
    with pytest.raises(KeyMaterialError, match="exists"):
        Ed25519Signer.generate().save(path)
    assert path.read_text() == before


@pytest.mark.parametrize("content", ["zz", "00" * 31, "00" * 33, ""])
def test_bad_key_files(tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.key"
    path.write_text(content)
    with pytest.raises(KeyMaterialError):
        Ed25519Signer.from_file(path)


def test_missing_and_binary_key_files(tmp_path: Path) -> None:
    with pytest.raises(KeyMaterialError, match="cannot read"):
        Ed25519Signer.from_file(tmp_path / "absent.key")
    path = tmp_path / "bin.key"
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(KeyMaterialError):
        Ed25519Signer.from_file(path)
