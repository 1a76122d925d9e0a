"""Hypothesis over the decoders that take bytes from outside (issue 11). Budget: ≤ 20 s.

Every decoder raises only its own error on arbitrary or mutated input, and nothing mutated ever
decodes into something that is accepted:

* ``ledger.encoding.decode``: accepts only what ``canonical`` produces (round trip exact);
* entries (``decode_envelope`` then ``admit``): a mutated envelope is never admitted;
* peer frames (``consensus.framing.decode_body``, ``consensus.runtime.decode_message``) and
  the cosignature frame's checks (``node.cosign``: ``decode`` + ``check_checkpoint``);
* checkpoint files (``ledger.checkpoints.from_file``) from arbitrary JSON.

Receipts and chain bundles have their own hostile-input tests beside their code
(``tests/ledger/test_receipts.py``, ``tests/ledger/test_bundle.py``); docs/guarantees.md lists
them with these.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from consensus.framing import FrameError, decode_body
from consensus.runtime import decode_message
from consensus.types import MalformedMessage
from ledger.checkpoints import check_checkpoint, from_file
from ledger.consortium import ConsortiumState
from ledger.crypto import Ed25519Signer
from ledger.encoding import canonical, decode
from ledger.entries import admit, decode_envelope, make_payload, sign_entry
from ledger.errors import LedgerError
from ledger.genesis import Genesis, load_genesis
from node.init import init_consortium

SETTINGS = settings(max_examples=200, deadline=None, derandomize=False,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> tuple[Genesis, Path]:
    d = tmp_path_factory.mktemp("fuzz") / "c"
    init_consortium(d, 3, base_port=46000)
    return load_genesis(d / "genesis.toml"), d


def _good_envelope(genesis: Genesis, folder: Path) -> dict[str, Any]:
    clerk = Ed25519Signer.from_file(folder / "keys" / "ji01-clerk1.key")
    case = "（2025）吉01执5号"
    body = {"doc_type": "执行通知书", "doc_no": case + "之一",
            "sha256": hashlib.sha256(b"fuzzed").digest(), "size": 6, "media_type": "text/plain"}
    p = make_payload("document", "吉01", clerk.public_key(), body, int(time.time() * 1000),
                     case=case)
    return sign_entry(clerk, genesis.chain_id, p)


@SETTINGS
@given(st.binary(max_size=512))
def test_decode_accepts_only_canonical_bytes(data: bytes) -> None:
    try:
        value = decode(data)
    except LedgerError:
        return
    assert canonical(value) == data


@SETTINGS
@given(data=st.data())
def test_a_mutated_envelope_is_never_admitted(
    consortium: tuple[Genesis, Path], data: st.DataObject
) -> None:
    genesis, folder = consortium
    env = _good_envelope(genesis, folder)
    raw = bytearray(canonical(env))
    # Flip, insert or delete a few bytes.
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        op = data.draw(st.sampled_from(["flip", "insert", "delete"]), label="op")
        i = data.draw(st.integers(0, max(0, len(raw) - 1)), label="at")
        if op == "flip":
            raw[i] ^= data.draw(st.integers(1, 255), label="mask")
        elif op == "insert":
            raw[i:i] = data.draw(st.binary(min_size=1, max_size=4), label="bytes")
        elif len(raw) > 1:
            del raw[i]
    mutated = bytes(raw)
    assume(mutated != canonical(env))
    state = ConsortiumState.from_genesis(genesis)
    try:
        decoded = decode_envelope(mutated, genesis.params)
        admit(decoded, state=state, chain_id=genesis.chain_id, now_ms=int(time.time() * 1000))
    except LedgerError:
        return
    raise AssertionError(f"mutated envelope admitted: {mutated.hex()}")


@SETTINGS
@given(st.binary(max_size=512))
def test_arbitrary_bytes_are_never_an_envelope(consortium: tuple[Genesis, Path],
                                               data: bytes) -> None:
    genesis, _ = consortium
    state = ConsortiumState.from_genesis(genesis)
    with pytest.raises(LedgerError):
        env = decode_envelope(data, genesis.params)
        admit(env, state=state, chain_id=genesis.chain_id, now_ms=int(time.time() * 1000))


@SETTINGS
@given(st.binary(max_size=512))
def test_peer_frame_bodies_raise_only_frame_errors(data: bytes) -> None:
    try:
        frame = decode_body(data)
    except FrameError:
        return
    assert isinstance(frame, dict)
    m = frame.get("m")
    if frame.get("k") == "raft":
        try:
            decode_message(m)
        except (MalformedMessage, ValueError, TypeError, KeyError):
            pass


_msg_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.text(max_size=8)
    | st.binary(max_size=40),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)
_message_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["vote", "vote_resp", "app", "app_resp", "heartbeat",
                              "heartbeat_resp", "prevote", "snap", "timeout_now", "x"])},
    optional={k: _msg_values for k in ("frm", "to", "term", "index", "log_term", "entries",
                                       "commit", "reject", "hint", "snapshot", "context")},
)


@SETTINGS
@given(_message_like)
def test_raft_messages_of_any_shape_raise_only_malformed(m: dict[str, Any]) -> None:
    try:
        decode_message(m)
    except (MalformedMessage, ValueError):
        pass


@SETTINGS
@given(st.binary(max_size=300) | _msg_values.map(lambda v: canonical(v) if _canon(v) else b""))
def test_cosignature_frames_raise_only_ledger_errors(data: bytes) -> None:
    # node.cosign.Cosigner.on_frame: decode(…, 4096), then the {cp, node, sig} shape and
    # check_checkpoint; anything else is dropped with a warning.
    try:
        msg = decode(data, max_size=4096)
        if isinstance(msg, dict) and set(msg) == {"cp", "node", "sig"}:
            check_checkpoint(msg["cp"])
    except LedgerError:
        pass


def _canon(v: Any) -> bool:
    try:
        canonical(v)
        return True
    except (LedgerError, TypeError, ValueError):
        return False


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**64, 2**64) | st.text(max_size=70)
    | st.floats(allow_nan=False),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=6),
    max_leaves=25,
)


@SETTINGS
@given(st.one_of(_json, st.fixed_dictionaries(
    {"checkpoint": _json, "signatures": _json}, optional={"hash_alg": _json, "v": _json})))
def test_checkpoint_files_from_arbitrary_json_raise_only_ledger_errors(obj: Any) -> None:
    try:
        from_file(obj)
    except LedgerError:
        pass
