"""The page's own cryptography and encoding, run in Chromium against Python's.

SHA-256 (FIPS 180-4 vectors, hashlib), SM3 (GB/T 32905 vectors, cryptography's SM3), the
strict canonical MessagePack codec (ledger.encoding's bytes, and inputs both must refuse), strict
base64, and RFC 9162 inclusion against the naive reference in webchain.
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from webchain import inclusion_path, mth

from ledger.crypto import H
from ledger.encoding import canonical, decode
from ledger.errors import EncodingError

pytestmark = pytest.mark.browser

SEED = 20261128


def _sm3(data: bytes) -> str:
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize().hex()


def _tagged(v: Any) -> Any:
    """A JSON form of a canonical value: bytes and big ints tagged, for the page to rebuild."""
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return v if abs(v) <= 2**53 - 1 else {"$i": str(v)}
    if isinstance(v, bytes):
        return {"$b": v.hex()}
    if isinstance(v, list):
        return [_tagged(x) for x in v]
    if isinstance(v, dict):
        return {"$m": [[k, _tagged(x)] for k, x in v.items()]}
    return v


def _run(page: Any, served: Any, script: str, arg: Any) -> Any:
    page.goto(served.url + "/")
    return page.evaluate(script, arg)


JS_HASHES = """async (cases) => {
  const H = await import('/static/hashes.js');
  const C = await import('/static/canonical.js');
  const out = {sha: [], sm3: [], chunked: [], file: null};
  for (const [hex, want] of cases.sha) out.sha.push([C.toHex(H.sha256(C.fromHex(hex))), want]);
  for (const [hex, want] of cases.sm3) out.sm3.push([C.toHex(H.sm3(C.fromHex(hex))), want]);
  // Incremental updates split at arbitrary points give the one-shot digest.
  for (const [hex, cuts, want, alg] of cases.chunked) {
    const data = C.fromHex(hex);
    const h = alg === 'sm3' ? H.newSm3() : H.newSha256();
    let prev = 0;
    for (const c of [...cuts, data.length]) { h.update(data.subarray(prev, c)); prev = c; }
    out.chunked.push([C.toHex(h.digest()), want]);
  }
  const million = new Uint8Array(1000000).fill(0x61);
  out.million = [C.toHex(H.sha256(million)), C.toHex(H.sm3(million))];
  // A Blob hashed through File.slice chunks (forced by a 1 MiB limit), and through WebCrypto.
  const big = C.fromHex(cases.blob);
  const blob = new Blob([big, big, big]);
  const progress = [];
  out.file = C.toHex(await H.sha256File(blob, {limit: 1 << 20, chunk: 300000,
    onProgress: (d, t) => progress.push(d)}));
  out.fileProgress = progress;
  out.fileWebCrypto = C.toHex(await H.sha256File(blob));
  return out;
}"""


def test_sha256_and_sm3_vectors_and_incremental(page: Any, served: Any) -> None:
    rng = random.Random(SEED)
    fips = [
        (b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        (b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        (b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
    ]
    gbt = [
        (b"abc", "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"),
        (b"abcd" * 16, "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"),
    ]
    # Every length around the padding boundaries (55, 56, 63, 64, 119, 120 …) and some random.
    lengths = list(range(0, 130)) + [rng.randrange(130, 5000) for _ in range(20)]
    randoms = [rng.randbytes(n) for n in lengths]
    sha = [(d.hex(), w) for d, w in fips]
    sha += [(d.hex(), hashlib.sha256(d).hexdigest()) for d in randoms]
    sm3 = [(d.hex(), w) for d, w in gbt] + [(d.hex(), _sm3(d)) for d in randoms]
    chunked = []
    for alg in ("sha256", "sm3"):
        for _ in range(15):
            d = rng.randbytes(rng.randrange(0, 1000))
            cuts = sorted(rng.randrange(0, len(d) + 1) for _ in range(rng.randrange(0, 6)))
            want = hashlib.sha256(d).hexdigest() if alg == "sha256" else _sm3(d)
            chunked.append((d.hex(), cuts, want, alg))
    blob = rng.randbytes(700_001)
    out = _run(page, served, JS_HASHES,
               {"sha": sha, "sm3": sm3, "chunked": chunked, "blob": blob.hex()})
    for got, want in out["sha"] + out["sm3"] + out["chunked"]:
        assert got == want, f"seed {SEED}"
    assert out["million"] == [
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
        _sm3(b"a" * 1_000_000),
    ]
    whole = hashlib.sha256(blob * 3).hexdigest()
    assert out["file"] == whole and out["fileWebCrypto"] == whole
    assert out["fileProgress"][-1] == len(blob) * 3 and len(out["fileProgress"]) == 8


JS_CANONICAL = """async (cases) => {
  const C = await import('/static/canonical.js');
  const build = (v) => {
    if (Array.isArray(v)) return v.map(build);
    if (v !== null && typeof v === 'object') {
      if ('$b' in v) return C.fromHex(v.$b);
      if ('$i' in v) return BigInt(v.$i);
      const o = {};
      for (const [k, x] of v.$m) o[k] = build(x);
      return o;
    }
    return v;
  };
  const encoded = cases.values.map(([v, want]) => [C.toHex(C.encode(build(v))), want]);
  const roundtrip = cases.values.map(
    ([v, want]) => C.toHex(C.encode(C.decode(C.fromHex(want)))) === want);
  const refused = cases.bad.map((hex) => {
    try { C.decode(C.fromHex(hex)); return 'accepted'; }
    catch (e) { return e instanceof C.EncodingError ? 'refused' : 'threw ' + e; }
  });
  const encodeRefused = [1.5, null, undefined, NaN, 2 ** 60].map((v) => {
    try { C.encode(v); return 'accepted'; } catch (e) { return 'refused'; }
  });
  const b64 = cases.b64.map(([s, hex]) => {
    try { return C.toHex(C.fromBase64(s)) === hex && C.toBase64(C.fromHex(hex)) === s; }
    catch (e) { return false; }
  });
  const b64bad = cases.b64bad.map((s) => {
    try { C.fromBase64(s); return 'accepted'; } catch (e) { return 'refused'; }
  });
  return {encoded, roundtrip, refused, encodeRefused, b64, b64bad};
}"""

BAD_MSGPACK = [
    "82a16201a16102",  # keys unsorted
    "82a16101a16102",  # duplicate key
    "cc05",  # 5 in uint 8: not the smallest family
    "cd00ff",  # 255 in uint 16
    "d005",  # a positive number in int 8
    "d0e0",  # −32 in int 8 (a negative fixint holds it)
    "c0",  # nil
    "ca00000000",  # float 32
    "cb0000000000000000",  # float 64
    "d40100",  # fixext
    "d90161",  # a 1-byte str in str 8
    "c5000100",  # a 1-byte bin in bin 16
    "dc000101",  # a 1-element array in array 16
    "0101",  # trailing bytes
    "a261",  # truncated
    "a1ff",  # invalid UTF-8
    "810101",  # integer map key
    "81c4016101",  # binary map key
    "dd7fffffff",  # a huge declared array length with no data
    "",  # empty
]


def test_canonical_msgpack_matches_python_and_is_strict(page: Any, served: Any) -> None:
    rng = random.Random(SEED)
    values: list[Any] = [
        0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**53 - 1, 2**53, 2**64 - 1,
        -1, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**63),
        True, False, "", "a" * 31, "b" * 32, "é" * 200, "案" * 30000, b"", b"\x00" * 255,
        b"\x01" * 256, b"\x02" * 70000, [], list(range(15)), list(range(16)), list(range(300)),
        {}, {"b": 1, "a": 2, "aa": 3, "A": 4, "é": 5, "z": 6}, {f"k{i}": i for i in range(20)},
        {"payload": {"v": 1, "kind": "document", "body": {"sha256": rng.randbytes(32)}},
         "sig": rng.randbytes(64)},
    ]
    cases = {
        "values": [(_tagged(v), canonical(v).hex()) for v in values],
        "bad": BAD_MSGPACK,
        "b64": [("", ""), ("YQ==", "61"), ("YWI=", "6162"), ("YWJj", "616263"),
                ("+/8=", "fbff")],
        "b64bad": ["YQ", "YR==", "YQ==\n", "Y Q==", "YQ=a", "-_8=", "YWJj="],
    }
    # Python's codec refuses the same inputs (both sides agree on what canonical means).
    for hex_ in BAD_MSGPACK:
        with pytest.raises(EncodingError):
            decode(bytes.fromhex(hex_))
    out = _run(page, served, JS_CANONICAL, cases)
    for (got, want), v in zip(out["encoded"], values, strict=True):
        assert got == want, f"encoding of {str(v)[:60]}"
    assert all(out["roundtrip"])
    assert out["refused"] == ["refused"] * len(BAD_MSGPACK)
    assert out["encodeRefused"] == ["refused"] * 5
    assert all(out["b64"]) and out["b64bad"] == ["refused"] * 7


JS_INCLUSION = """async (cases) => {
  const V = await import('/static/verify.js');
  const C = await import('/static/canonical.js');
  const Hs = await import('/static/hashes.js');
  const H = Hs.chainHash(cases.alg);
  const good = [], bad = [];
  for (const [index, size, leaf, path, root] of cases.proofs) {
    const r = V.rootFromInclusion(H, index, size, C.fromHex(leaf), path.map((p) => C.fromHex(p)));
    good.push(C.toHex(r) === root);
    // Corruptions (after transparency-dev's list): index ±1, an element dropped or added at
    // either end, a bit flipped in each element. None may lead to the root.
    // (The size itself is bound by the signed checkpoint, not by the path, so a size change
    // is tested there: see the tampered-receipt browser tests.)
    const variants = [[index + 1, size, path], [index - 1, size, path],
      [index, size, [...path, root]], [index, size, [root, ...path]]];
    if (path.length) variants.push([index, size, path.slice(1)], [index, size, path.slice(0, -1)]);
    path.forEach((p, i) => {
      const q = C.fromHex(p); q[i % 32] ^= 1; const np = [...path]; np[i] = C.toHex(q);
      variants.push([index, size, np]);
    });
    for (const [i, s, p] of variants) {
      let ok;
      try {
        const r = V.rootFromInclusion(H, i, s, C.fromHex(leaf), p.map((x) => C.fromHex(x)));
        ok = C.toHex(r) === root;
      } catch (e) { ok = false; }
      if (ok) bad.push([index, size, i, s, p.length]);
    }
  }
  return {good, bad, quorum: [[V.quorumSize('majority', 3), V.quorumSize('majority', 4),
    V.quorumSize('two_thirds', 3), V.quorumSize('two_thirds', 4), V.quorumSize('two_thirds', 6)]],
    ed25519: await V.ed25519Available()};
}"""


@pytest.mark.parametrize("alg", ["sha256", "sm3"])
def test_rfc9162_inclusion_against_reference(page: Any, served: Any, alg: str) -> None:
    leaves_all = [f"leaf {i}".encode() for i in range(40)]
    proofs = []
    for size in list(range(1, 20)) + [31, 32, 33, 40]:
        leaves = leaves_all[:size]
        root = mth(alg, leaves).hex()
        for index in range(size):
            leaf = H(alg, b"\x00" + leaves[index]).hex()
            path = [p.hex() for p in inclusion_path(alg, index, leaves)]
            proofs.append((index, size, leaf, path, root))
    out = _run(page, served, JS_INCLUSION, {"alg": alg, "proofs": proofs})
    assert all(out["good"])
    assert out["bad"] == [], "a corrupted proof verified"
    assert out["quorum"] == [[2, 3, 3, 3, 5]]
    assert out["ed25519"] is True


def test_anchors_in_page_match_the_server(page: Any, served: Any) -> None:
    page.goto(served.url + "/")
    embedded = json.loads(
        page.evaluate("() => document.getElementById('consortium').textContent"))
    assert embedded["chain_id"] == served.chain.chain_id.hex()


JS_VERIFY = """async ({anchors, receipts, hash}) => {
  const V = await import('/static/verify.js');
  const C = await import('/static/canonical.js');
  const out = [];
  for (const r of receipts) {
    const res = await V.verifyReceipt(anchors, r, C.fromHex(hash));
    out.push({ok: res.ok, failure: res.failure && res.failure.check,
              signers: (res.facts.signers || []).length, quorum: res.facts.quorum});
  }
  return out;
}"""


def test_two_thirds_quorum_counts_distinct_voters(page: Any, served: Any) -> None:
    """receipt_quorum = two_thirds: ⌊2n/3⌋+1 of n voters (DESIGN §2), so 3 of 3 here."""
    from webchain import Chain

    from api.web import consortium_document

    chain = Chain(receipt_quorum="two_thirds")
    content = b"two thirds"
    env = chain.document(content, time=1_765_000_000_000)
    chain.add_block([env], time=1_765_000_001_000, signers=["n-jl0102", "n-jl"])
    env2 = chain.document(content + b"!", time=1_765_000_002_000)
    chain.add_block([env2], time=1_765_000_003_000)
    short = chain.receipt(chain.entry_id_of(env))
    full = chain.receipt(chain.entry_id_of(env2))
    anchors = consortium_document(chain.summary())
    page.goto(served.url + "/")
    out = page.evaluate(JS_VERIFY, {"anchors": anchors, "receipts": [short],
                                    "hash": hashlib.sha256(content).hexdigest()})
    assert out == [{"ok": False, "failure": "signatures", "signers": 2, "quorum": 3}]
    out = page.evaluate(JS_VERIFY, {"anchors": anchors, "receipts": [full],
                                    "hash": hashlib.sha256(content + b"!").hexdigest()})
    assert out == [{"ok": True, "failure": None, "signers": 3, "quorum": 3}]
