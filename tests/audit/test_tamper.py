"""The tamper matrix (issue 9): every tampering is caught by ``audit chain`` and located.

The chain (tests/audit/conftest.py) is realistic and built with the real ledger code; here it
is damaged one way at a time, as a chain bundle and as a data dir, and ``courtledger audit
chain`` must exit 1 naming the first bad height and what is wrong. The untouched chain exits
0. Budget: ≤ 30 s.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import plyvel
import pytest
from click.testing import CliRunner

from ledger.checkpoints import make_checkpoint, sign_checkpoint
from ledger.crypto import TAG_BLOCK, hash_object, sign_object
from ledger.encoding import canonical, decode
from node.audit import audit_group
from tests.audit.conftest import Chain, key

_LEN = struct.Struct(">I")
_U64 = struct.Struct(">Q")

# The height tampered with: in the middle, after the revocation, before the membership changes.
H = 20


def run(*args: str) -> tuple[int, Any, str]:
    """``courtledger audit …``: exit code, the parsed JSON output (if any), stderr."""
    result = CliRunner().invoke(audit_group, [*args], catch_exceptions=False)
    out: Any = None
    if "--json" in args and result.stdout.strip():
        out = json.loads(result.stdout)
    return result.exit_code, out, result.stderr


def audit_json(*source: str, chain: Chain) -> tuple[int, Any, str]:
    return run("chain", *source, "--consortium", str(chain.genesis_file), "--json")


# ------------------------------------------------------------------------------- bundles


def read_frames(path: Path) -> list[dict[str, Any]]:
    data = path.read_bytes()
    out, off = [], 0
    while off < len(data):
        (n,) = _LEN.unpack_from(data, off)
        out.append(decode(data[off + 4 : off + 4 + n]))
        off += 4 + n
    return out


def write_frames(path: Path, frames: list[dict[str, Any]]) -> Path:
    with path.open("wb") as fh:
        for f in frames:
            raw = canonical(f)
            fh.write(_LEN.pack(len(raw)) + raw)
    return path


def flip(b: bytes, i: int = 0) -> bytes:
    return b[:i] + bytes([b[i] ^ 0x01]) + b[i + 1 :]


def first_problem(out: dict[str, Any]) -> dict[str, Any]:
    located = [p for p in out["problems"] if p["height"] is not None]
    return located[0]


def test_untouched_chain_holds_everywhere(chain: Chain) -> None:
    for source in (("--bundle", str(chain.bundle)), ("--data", str(chain.data))):
        code, out, err = audit_json(*source, chain=chain)
        assert code == 0, out["problems"]
        assert out["ok"] and out["pinned"] and out["problems"] == []
        assert out["height"] == len(chain.blocks)
        assert out["entries"] == len(chain.entry_ids)
        assert out["checkpoints"] == len(chain.checkpoints)
        assert [(m["op"], m["node"]) for m in out["membership"]] == [
            ("add_learner", "node-d"), ("promote", "node-d"), ("remove", "node-c")]
        assert "NOT PINNED" not in err


def test_unpinned_says_so_and_still_checks(chain: Chain) -> None:
    code, out, err = run("chain", "--bundle", str(chain.bundle), "--json")
    assert code == 0 and out["pinned"] is False
    assert f"chain id {chain.genesis.chain_id.hex()} NOT PINNED" in err


def test_chain_id_pin(chain: Chain, other_chain: Chain) -> None:
    code, out, _ = run("chain", "--bundle", str(chain.bundle), "--chain-id",
                       chain.genesis.chain_id.hex(), "--json")
    assert code == 0 and out["pinned"]
    # Another chain's bundle against this pin: refused at height 0.
    code, out, _ = run("chain", "--bundle", str(other_chain.bundle), "--chain-id",
                       chain.genesis.chain_id.hex(), "--json")
    assert code == 1 and first_problem(out)["height"] == 0
    assert "not the pinned" in first_problem(out)["what"]


BundleTamper = Callable[[list[dict[str, Any]]], None]


def _entry_byte(f: list[dict[str, Any]]) -> None:
    p = f[H]["block"]["entries"][1]["payload"]
    p["nonce"] = flip(p["nonce"], 3)


def _header_byte(f: list[dict[str, Any]]) -> None:
    hd = f[H]["block"]["header"]
    hd["prev"] = flip(hd["prev"], 7)


def _block_sig(f: list[dict[str, Any]]) -> None:
    f[H]["block"]["sig"] = flip(f[H]["block"]["sig"], 10)


def _entry_sig(f: list[dict[str, Any]]) -> None:
    env = f[H]["block"]["entries"][1]
    env["sig"] = flip(env["sig"], 10)


def _checkpoint_sig(f: list[dict[str, Any]]) -> None:
    n_blocks = sum(1 for x in f if set(x) == {"block"})
    cp_frame = f[n_blocks + H]  # checkpoints follow the blocks, one per height from 1
    assert cp_frame["checkpoint"]["height"] == H
    s = cp_frame["signatures"][1]
    s["sig"] = flip(s["sig"], 5)


def _delete_block(f: list[dict[str, Any]]) -> None:
    del f[H]


def _swap_blocks(f: list[dict[str, Any]]) -> None:
    f[H], f[H + 1] = f[H + 1], f[H]


def _outsider_resign(f: list[dict[str, Any]]) -> None:
    block = f[H]["block"]
    chain_id = hash_object("sha256", f[0]["block"]["header"])
    block["header"]["proposer"] = "node-x"
    block["sig"] = sign_object(key("node-x"), TAG_BLOCK, chain_id, block["header"])


BUNDLE_CASES: dict[str, tuple[BundleTamper, int, int | None, str]] = {
    # name: (tamper, first bad height, entry index or None, words in what is wrong)
    "entry byte": (_entry_byte, H, 1, "signature"),
    "header byte": (_header_byte, H, None, "hash link"),
    "block signature": (_block_sig, H, None, "block signature"),
    "entry signature": (_entry_sig, H, 1, "signature"),
    "checkpoint signature": (_checkpoint_sig, H, None, "node-b's signature does not verify"),
    "deleted block": (_delete_block, H, None, f"block {H} missing"),
    "swapped blocks": (_swap_blocks, H, None, f"block {H} missing"),
    "outsider re-signs": (_outsider_resign, H, None, "'node-x' is not a voting node"),
}


@pytest.mark.parametrize("name", list(BUNDLE_CASES))
def test_bundle_tampering_is_caught_and_located(name: str, chain: Chain, tmp_path: Path) -> None:
    tamper, height, index, words = BUNDLE_CASES[name]
    assert chain.bundle is not None
    frames = read_frames(chain.bundle)
    tamper(frames)
    bad = write_frames(tmp_path / "bad.bundle", frames)
    code, out, _ = audit_json("--bundle", str(bad), chain=chain)
    assert code == 1, name
    first = first_problem(out)
    assert first["height"] == height, (name, out["problems"][:4])
    located = [p for p in out["problems"] if p["height"] == height and words in p["what"]]
    assert located, (name, out["problems"][:6])
    if index is not None:
        assert any(p["index"] == index for p in located), (name, located)
    # Nothing before the tampered height is blamed.
    assert all(p["height"] is None or p["height"] >= height for p in out["problems"])


def test_truncated_bundle_is_an_integrity_failure(chain: Chain, tmp_path: Path) -> None:
    assert chain.bundle is not None
    data = chain.bundle.read_bytes()
    # Cut in the middle of the frame of block H.
    off = 0
    for _ in range(H):
        (n,) = _LEN.unpack_from(data, off)
        off += 4 + n
    (n,) = _LEN.unpack_from(data, off)
    cut = tmp_path / "cut.bundle"
    cut.write_bytes(data[: off + 4 + n // 2])
    code, out, _ = audit_json("--bundle", str(cut), chain=chain)
    assert code == 1
    first = first_problem(out)
    assert first["height"] == H and "truncated" in first["what"]
    # Human output too: exit 1, the problem on stdout.
    result = CliRunner().invoke(audit_group, ["chain", "--bundle", str(cut)])
    assert result.exit_code == 1 and "truncated" in result.stdout


def test_entry_by_revoked_identity_is_caught(revoked_chain: Chain) -> None:
    height = revoked_chain.heights["injected"]
    assert height == revoked_chain.heights["revoke"] + 1  # the revocation binds from here
    for source in (("--bundle", str(revoked_chain.bundle)), ("--data", str(revoked_chain.data))):
        code, out, _ = audit_json(*source, chain=revoked_chain)
        assert code == 1
        assert [(p["height"], p["index"]) for p in out["problems"]] == [(height, 1)]
        assert "revoked" in out["problems"][0]["what"]


def test_conflicting_checkpoints_are_equivocation_evidence(chain: Chain, tmp_path: Path) -> None:
    assert chain.bundle is not None
    frames = read_frames(chain.bundle)
    g = chain.genesis
    # The voters in force at H sign a second checkpoint of the same height: another block.
    cp = make_checkpoint(g.chain_id, H, bytes(32), chain.checkpoints[H - 1][0]["tree_size"],
                         bytes(range(32)), chain.checkpoints[H - 1][0]["time"])
    sigs = [{"node": n, "sig": sign_checkpoint(key(n), g.chain_id, cp)}
            for n in ("node-a", "node-b", "node-c")]
    frames.append({"checkpoint": cp, "signatures": sigs})
    bad = write_frames(tmp_path / "equivocating.bundle", frames)
    code, out, _ = audit_json("--bundle", str(bad), chain=chain)
    assert code == 1
    assert first_problem(out)["height"] == H
    assert any("equivocation" in p["what"] for p in out["problems"])
    [ev] = out["equivocations"]
    assert ev["first"]["checkpoint"]["height"] == ev["second"]["checkpoint"]["height"] == H
    assert ev["first"]["checkpoint"]["block"] != ev["second"]["checkpoint"]["block"]
    assert ev["second"]["checkpoint"]["block"] == "00" * 32
    # Human output prints both checkpoints as the evidence.
    result = CliRunner().invoke(audit_group, ["chain", "--bundle", str(bad)])
    assert result.exit_code == 1 and "EQUIVOCATION" in result.stdout
    assert result.stdout.count('"format": "courtledger-checkpoint/1"') == 2


# ------------------------------------------------------------------------------- data dirs


def _seal(k: bytes, v: bytes) -> bytes:
    return v + hashlib.sha256(k + v).digest()[:8]


def _edit_block(db: Any, height: int, fn: Callable[[dict[str, Any]], None]) -> None:
    k = b"B" + _U64.pack(height)
    obj = decode(db.get(k))
    fn(obj)
    db.put(k, canonical(obj))


def _d_entry_byte(db: Any, chain: Chain) -> None:
    leaf = chain.blocks[H - 1]["header"]["first_index"] + 1
    k = b"X" + _U64.pack(leaf)
    env = decode(db.get(k))
    env["payload"]["nonce"] = flip(env["payload"]["nonce"], 3)
    db.put(k, canonical(env))


def _d_header_byte(db: Any, chain: Chain) -> None:
    _edit_block(db, H, lambda o: o["header"].update(prev=flip(o["header"]["prev"], 7)))


def _d_block_sig(db: Any, chain: Chain) -> None:
    _edit_block(db, H, lambda o: o.update(sig=flip(o["sig"], 10)))


def _d_checkpoint_sig(db: Any, chain: Chain) -> None:
    # A careful forger: the record's check value is recomputed, only the voter's key tells.
    k = b"K" + _U64.pack(H)
    obj = decode(db.get(k)[:-8])
    obj["signatures"][1]["sig"] = flip(obj["signatures"][1]["sig"], 5)
    db.put(k, _seal(k, canonical(obj)))


def _d_delete_block(db: Any, chain: Chain) -> None:
    db.delete(b"B" + _U64.pack(H))


def _d_swap_blocks(db: Any, chain: Chain) -> None:
    a, b = b"B" + _U64.pack(H), b"B" + _U64.pack(H + 1)
    va, vb = db.get(a), db.get(b)
    db.put(a, vb)
    db.put(b, va)


def _d_outsider(db: Any, chain: Chain) -> None:
    def resign(o: dict[str, Any]) -> None:
        o["header"]["proposer"] = "node-x"
        o["sig"] = sign_object(key("node-x"), TAG_BLOCK, chain.genesis.chain_id, o["header"])

    _edit_block(db, H, resign)


def _d_noncanonical_entry(db: Any, chain: Chain) -> None:
    import msgpack

    leaf = chain.blocks[H - 1]["header"]["first_index"] + 1
    k = b"X" + _U64.pack(leaf)
    env = decode(db.get(k))
    db.put(k, msgpack.packb({"sig": env["sig"], "payload": env["payload"]}, use_bin_type=True))


DATA_CASES: dict[str, tuple[Callable[[Any, Chain], None], int, int | None, str]] = {
    "non-canonical entry record": (_d_noncanonical_entry, H, 1, "not canonically encoded"),
    "entry byte": (_d_entry_byte, H, 1, "signature"),
    "header byte": (_d_header_byte, H, None, "hash link"),
    "block signature": (_d_block_sig, H, None, "block signature"),
    "checkpoint signature": (_d_checkpoint_sig, H, None, "node-b's signature does not verify"),
    "deleted block": (_d_delete_block, H, None, f"block {H} is missing"),
    "swapped blocks": (_d_swap_blocks, H, None, f"holds block {H + 1}"),
    "outsider re-signs": (_d_outsider, H, None, "'node-x' is not a voting node"),
}


@pytest.mark.parametrize("name", list(DATA_CASES))
def test_data_dir_tampering_is_caught_and_located(name: str, chain: Chain,
                                                  data_copy: Path) -> None:
    tamper, height, index, words = DATA_CASES[name]
    db = plyvel.DB(str(data_copy))
    try:
        tamper(db, chain)
    finally:
        db.close()
    code, out, _ = audit_json("--data", str(data_copy), chain=chain)
    assert code == 1, name
    assert first_problem(out)["height"] == height, (name, out["problems"][:4])
    located = [p for p in out["problems"] if p["height"] == height and words in p["what"]]
    assert located, (name, out["problems"][:6])
    if index is not None:
        assert any(p["index"] == index for p in located)


def test_progress_bar_with_entries_per_second_on_stderr(chain: Chain) -> None:
    for source in (("--bundle", str(chain.bundle)), ("--data", str(chain.data))):
        result = CliRunner().invoke(audit_group, ["chain", *source, "--progress", "--json"])
        assert result.exit_code == 0
        assert "entries/s" in result.stderr and "entries/s" not in result.stdout
        json.loads(result.stdout)  # the data on stdout stays clean JSON
    quiet = CliRunner().invoke(audit_group, ["chain", "--bundle", str(chain.bundle)])
    assert "entries/s" not in quiet.stderr  # not a terminal: no bar by default


def test_random_bit_flips_never_pass_and_never_crash(chain: Chain, tmp_path: Path) -> None:
    """Any flipped bit anywhere in the bundle is an integrity failure, never a traceback."""
    import random

    assert chain.bundle is not None
    data = chain.bundle.read_bytes()
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    path = tmp_path / "flipped.bundle"
    for _ in range(25):
        raw = bytearray(data)
        pos = rng.randrange(len(raw))
        raw[pos] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(raw))
        result = CliRunner().invoke(audit_group, ["chain", "--bundle", str(path),
                                                  "--consortium", str(chain.genesis_file)])
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            f"seed {seed}, byte {pos}: {result.exception!r}")
        assert result.exit_code == 1, f"seed {seed}: a flip at byte {pos} went unnoticed"


def _raw_frames(path: Path) -> list[bytes]:
    data = path.read_bytes()
    out, off = [], 0
    while off < len(data):
        (n,) = _LEN.unpack_from(data, off)
        out.append(data[off + 4 : off + 4 + n])
        off += 4 + n
    return out


def test_fast_block_frames_decode_exactly_as_the_strict_decoder(chain: Chain) -> None:
    from node.auditsource import split_block_frame

    assert chain.bundle is not None
    raws = _raw_frames(chain.bundle)
    for raw in raws[1 : len(chain.blocks) + 1]:
        fast = split_block_frame(raw)
        assert fast is not None
        block, slices = fast
        assert block == decode(raw)["block"]
        assert slices == [canonical(e) for e in block["entries"]]
    assert split_block_frame(raws[0]) is None  # the genesis frame takes the strict path
    assert split_block_frame(raws[-1]) is None  # and so do checkpoints


def test_non_canonical_entry_bytes_are_caught(chain: Chain, tmp_path: Path) -> None:
    """An entry re-encoded with its payload's keys out of order: same values, other bytes."""
    import msgpack

    assert chain.bundle is not None
    raws = _raw_frames(chain.bundle)
    block = decode(raws[H])["block"]
    env = block["entries"][2]
    shuffled = {"sig": env["sig"], "payload": dict(reversed(list(env["payload"].items())))}
    entries = [canonical(e) for e in block["entries"]]
    entries[2] = msgpack.packb(shuffled, use_bin_type=True)
    assert entries[2] != canonical(env)
    raw = (b"\x81" + canonical("block") + b"\x83" + canonical("entries")
           + bytes([0x90 | len(entries)]) + b"".join(entries) + canonical("header")
           + canonical(block["header"]) + canonical("sig") + canonical(block["sig"]))
    raws[H] = raw
    bad = tmp_path / "noncanonical.bundle"
    bad.write_bytes(b"".join(_LEN.pack(len(r)) + r for r in raws))
    code, out, _ = audit_json("--bundle", str(bad), chain=chain)
    assert code == 1
    assert [(p["height"], p["index"]) for p in out["problems"]] == [(H, 2)]
    assert "not canonically encoded where it is stored" in out["problems"][0]["what"]
    # A frame whose own shell is not canonical is refused by the strict decoder.
    raws[H] = msgpack.packb({"block": {"sig": block["sig"], "header": block["header"],
                                       "entries": block["entries"]}}, use_bin_type=True)
    bad.write_bytes(b"".join(_LEN.pack(len(r)) + r for r in raws))
    code, out, _ = audit_json("--bundle", str(bad), chain=chain)
    assert code == 1 and first_problem(out)["height"] == H
    assert "not canonical" in first_problem(out)["what"]
