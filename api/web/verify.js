// Receipt verification in the browser (DESIGN §2, "Checkpoint files, receipts").
//
// verifyReceipt() checks a courtledger-receipt/1 against the trust anchors the page pins
// (chain id, hash algorithm, genesis voters and their Ed25519 keys, receipt quorum) and never
// against anything the receipt says about itself. It returns every check it made, passed or
// not, so the page can show a reader exactly what was proven. The page says "Recorded" only
// when result.ok is true, and result.ok is true only when every check passed.

import {
  EncodingError, bytesEqual, concatBytes, decode, encode, fromBase64, fromHex, isMap, toHex,
} from "./canonical.js";
import { chainHash, sha256 } from "./hashes.js";

const utf8 = new TextEncoder();
export const TAG_CHECKPOINT = utf8.encode("courtledger:checkpoint:v1\x00");
export const TAG_ENTRY = utf8.encode("courtledger:entry:v1\x00");
export const RECEIPT_FORMAT = "courtledger-receipt/1";
const CHECKPOINT_KEYS = ["block", "chain", "height", "root", "time", "tree_size", "v"];
// Exactly these fields, as ledger/receipts.py requires: a receipt with more or fewer is not a
// courtledger-receipt/1.
const RECEIPT_KEYS = ["checkpoint", "consortium", "entry", "entry_id", "format", "hash_alg",
  "inclusion_path", "leaf_index", "signatures"];
const ELEMENT_KEYS = ["checkpoint", "entry", "inclusion_path", "leaf_index", "signatures"];

function exactKeys(obj, keys, check, where) {
  const got = Object.keys(obj).sort();
  if (got.join() !== keys.join()) {
    fail(check, `${where} has fields ${got.join(", ")}; expected ${keys.join(", ")}`);
  }
}

/** A failed check: carries the check id so the page can mark which one failed. */
export class CheckFailure extends Error {
  constructor(check, detail) {
    super(detail);
    this.check = check;
  }
}

function fail(check, detail) {
  throw new CheckFailure(check, detail);
}

function isCount(v) {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/** The number of valid voter signatures a checkpoint needs (DESIGN §2 receipt_quorum). */
export function quorumSize(rule, voters) {
  if (rule === "majority") return Math.floor(voters / 2) + 1;
  if (rule === "two_thirds") return Math.floor((2 * voters) / 3) + 1;
  throw new Error(`unknown receipt_quorum ${rule}`);
}

/**
 * The root an RFC 9162 §2.1.3.2 inclusion proof leads to, or a thrown CheckFailure when the
 * proof's shape is impossible for (index, size).
 */
export function rootFromInclusion(H, index, size, leafHash, path) {
  if (!isCount(index) || !isCount(size) || index >= size) {
    fail("inclusion", `leaf index ${index} is not inside a tree of size ${size}`);
  }
  let fn = index;
  let sn = size - 1;
  let r = leafHash;
  for (const p of path) {
    if (sn === 0) fail("inclusion", "the inclusion path is longer than the tree allows");
    if (fn % 2 === 1 || fn === sn) {
      r = H(concatBytes(Uint8Array.of(1), p, r));
      if (fn % 2 === 0) {
        // fn is the last node of its level and a right child nowhere: climb until it is.
        while (fn % 2 === 0 && fn !== 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = H(concatBytes(Uint8Array.of(1), r, p));
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) fail("inclusion", "the inclusion path is shorter than the tree needs");
  return r;
}

/** Parse a checkpoint as it appears in JSON (hex fields) into its canonical map (bytes). */
export function parseCheckpoint(obj, where = "checkpoint") {
  if (!isMap(obj)) fail("checkpoint", `${where} is not an object`);
  const keys = Object.keys(obj).sort();
  if (keys.join() !== CHECKPOINT_KEYS.join()) {
    fail("checkpoint", `${where} has fields ${keys.join(", ")}; expected ${CHECKPOINT_KEYS.join(", ")}`);
  }
  if (obj.v !== 1) fail("checkpoint", `${where}.v is not 1`);
  for (const k of ["height", "tree_size", "time"]) {
    if (!isCount(obj[k])) fail("checkpoint", `${where}.${k} is not a non-negative integer`);
  }
  const cp = { v: 1, height: obj.height, tree_size: obj.tree_size, time: obj.time };
  for (const k of ["chain", "block", "root"]) {
    try {
      cp[k] = fromHex(obj[k], 32);
    } catch (e) {
      fail("checkpoint", `${where}.${k} is not 32 bytes of lowercase hex`);
    }
  }
  return cp;
}

/** The bytes each court signs for a checkpoint: tag + chain_id + canonical(checkpoint). */
export function checkpointMessage(chainId, checkpoint) {
  return concatBytes(TAG_CHECKPOINT, chainId, encode(checkpoint));
}

/** Verify one Ed25519 signature with WebCrypto (RFC 8032); false on any failure. */
export async function ed25519Verify(publicKey, message, signature) {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  try {
    const key = await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false,
      ["verify"]);
    return await crypto.subtle.verify({ name: "Ed25519" }, key, signature, message);
  } catch (e) {
    return false;
  }
}

/** True when this browser can verify Ed25519 signatures (WebCrypto, secure context). */
export async function ed25519Available() {
  if (!globalThis.isSecureContext || !globalThis.crypto || !crypto.subtle) return false;
  try {
    // RFC 8032 §7.1 test 1: the empty message.
    const pk = fromHex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
    const sig = fromHex("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
      + "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
    return await ed25519Verify(pk, new Uint8Array(0), sig);
  } catch (e) {
    return false;
  }
}

/**
 * Count distinct voters whose signature over the checkpoint verifies. Duplicates by one node
 * count once; signatures by non-voters (or unknown nodes) count for nothing (DESIGN §2).
 * Returns {signers: [node], rejected: [{node, reason}]}.
 */
export async function countSignatures(chainId, checkpoint, signatures, voters) {
  if (!Array.isArray(signatures)) fail("signatures", "signatures is not a list");
  const message = checkpointMessage(chainId, checkpoint);
  const signers = [];
  const rejected = [];
  const seen = new Set();
  for (const s of signatures) {
    const node = isMap(s) && typeof s.node === "string" ? s.node : null;
    if (node === null) {
      rejected.push({ node: "?", reason: "malformed" });
      continue;
    }
    if (seen.has(node)) continue;
    const voter = voters.get(node);
    if (!voter) {
      rejected.push({ node, reason: "not_a_voter" });
      continue;
    }
    let sig;
    try {
      sig = fromHex(s.sig, 64);
    } catch (e) {
      rejected.push({ node, reason: "malformed" });
      continue;
    }
    if (await ed25519Verify(voter.public_key, message, sig)) {
      seen.add(node);
      signers.push(voter);
    } else {
      rejected.push({ node, reason: "bad_signature" });
    }
  }
  return { signers, rejected };
}

async function entrySignatureOk(chainId, envelope) {
  const p = envelope.payload;
  return ed25519Verify(p.signer, concatBytes(TAG_ENTRY, chainId, encode(p)), envelope.sig);
}

function decodeEntry(b64, check) {
  let bytes;
  let envelope;
  try {
    bytes = fromBase64(b64);
  } catch (e) {
    fail(check, "the entry is not base64 (RFC 4648 §4)");
  }
  try {
    envelope = decode(bytes);
  } catch (e) {
    if (e instanceof EncodingError) fail(check, `the entry is not canonical MessagePack: ${e.message}`);
    throw e;
  }
  if (!isMap(envelope) || !isMap(envelope.payload) || !(envelope.sig instanceof Uint8Array)) {
    fail(check, "the entry is not an envelope {payload, sig}");
  }
  if (Object.keys(envelope).length !== 2) fail(check, "the envelope has extra fields");
  const p = envelope.payload;
  if (p.v !== 1 || typeof p.kind !== "string" || typeof p.court !== "string"
      || !isCount(p.time) || !(p.signer instanceof Uint8Array) || !isMap(p.body)) {
    fail(check, "the entry's payload lacks v, kind, court, time, signer or body");
  }
  return { bytes, envelope };
}

function parsePath(path, check) {
  if (!Array.isArray(path)) fail(check, "inclusion_path is not a list");
  return path.map((p) => {
    try {
      return fromHex(p, 32);
    } catch (e) {
      return fail(check, "an inclusion path element is not 32 bytes of hex");
    }
  });
}

function votersIn(nodes) {
  const m = new Map();
  for (const n of nodes.values()) if (n.role === "voter") m.set(n.id, n);
  return m;
}

/**
 * Apply one membership change (DESIGN §2 entries: add_learner | promote | remove |
 * update_keys) to the node table. Changes take effect from the block after the one holding it.
 */
function applyMembership(nodes, body) {
  const id = body.id;
  if (typeof id !== "string") fail("consortium", "a membership change names no node id");
  const known = nodes.get(id);
  switch (body.op) {
    case "add_learner":
      if (known) fail("consortium", `add_learner of ${id}, which is already a member`);
      if (!(body.public_key instanceof Uint8Array) || body.public_key.length !== 32) {
        fail("consortium", `add_learner of ${id} without a 32-byte public key`);
      }
      nodes.set(id, { id, court: String(body.court || ""), public_key: body.public_key, role: "learner" });
      break;
    case "promote":
      if (!known || known.role !== "learner") fail("consortium", `promote of ${id}, not a learner`);
      nodes.set(id, { ...known, role: "voter" });
      break;
    case "remove":
      if (!known) fail("consortium", `remove of ${id}, not a member`);
      nodes.delete(id);
      break;
    case "update_keys":
      if (!known) fail("consortium", `update_keys of ${id}, not a member`);
      if (body.public_key instanceof Uint8Array) {
        if (body.public_key.length !== 32) fail("consortium", "update_keys with a bad public key");
        nodes.set(id, { ...known, public_key: body.public_key });
      }
      break;
    default:
      fail("consortium", `unknown membership op ${body.op}`);
  }
}

/**
 * Verify a receipt. anchors: {chain_id (hex), hash_alg, receipt_quorum, nodes: [{id, court,
 * public_key (hex), role}]} — the page's pinned consortium. expectedSha256: the document hash
 * (Uint8Array) the reader asked about.
 *
 * Returns {ok, checks: [{id, ok, detail}], failure, facts} where facts (court, doc_type, ...)
 * come from verified data only.
 */
export async function verifyReceipt(anchors, receipt, expectedSha256) {
  const checks = [];
  const facts = {};
  const pass = (id, detail = "") => checks.push({ id, ok: true, detail });
  try {
    const chainId = fromHex(anchors.chain_id, 32);
    const alg = anchors.hash_alg;
    if (alg !== "sha256" && alg !== "sm3") fail("format", `hash algorithm ${alg} is not supported`);
    const H = chainHash(alg);
    facts.chain_id = anchors.chain_id;
    facts.hash_alg = alg;

    // 1. The receipt's form. hash_alg comes from the pinned genesis; a receipt that claims
    //    another one is refused rather than believed.
    if (!isMap(receipt) || receipt.format !== RECEIPT_FORMAT) {
      fail("format", `not a ${RECEIPT_FORMAT} receipt`);
    }
    exactKeys(receipt, RECEIPT_KEYS, "format", "the receipt");
    if (receipt.hash_alg !== alg) {
      fail("format", `the receipt says hash_alg ${receipt.hash_alg}; the chain uses ${alg}`);
    }
    pass("format", RECEIPT_FORMAT);

    // 2. The entry: canonical bytes, re-encoded byte for byte (DESIGN §2 canonical encoding).
    const { bytes: entryBytes, envelope } = decodeEntry(receipt.entry, "entry");
    const payload = envelope.payload;
    const entryId = H(encode(payload));
    if (toHex(entryId) !== receipt.entry_id) {
      fail("entry", "entry_id is not H(canonical(payload))");
    }
    pass("entry", `${entryBytes.length} bytes`);
    facts.entry_id = receipt.entry_id;

    // 2b. The entry's own signature by the key it names (over tag + chain_id + payload). Who
    //     that key belongs to is what the courts' cosignature vouches for: they cosign only
    //     blocks whose every entry passed validity, signer's roles included.
    if (!(await entrySignatureOk(chainId, envelope))) {
      fail("signer", "the entry's signature does not verify with its signer key");
    }
    pass("signer");

    // 3. It is a document whose SHA-256 is the one asked about. Only document entries are
    //    public (DESIGN §5): their receipts carry the whole signed payload.
    if (payload.kind !== "document") fail("document", `the entry is a ${payload.kind}, not a document`);
    const body = payload.body;
    if (!(body.sha256 instanceof Uint8Array) || !bytesEqual(body.sha256, expectedSha256)) {
      fail("document", "the entry's body.sha256 is not the SHA-256 of this document");
    }
    pass("document");
    facts.court = payload.court;
    facts.doc_type = typeof body.doc_type === "string" ? body.doc_type : "";
    facts.doc_no = typeof body.doc_no === "string" ? body.doc_no : "";
    facts.title = typeof body.title === "string" ? body.title : "";
    facts.case = typeof payload.case === "string" ? payload.case : "";
    facts.declared_time = payload.time;

    // 4. The inclusion proof to the checkpoint root (RFC 9162 §2.1.3.2).
    const cp = parseCheckpoint(receipt.checkpoint);
    const leaf = H(concatBytes(Uint8Array.of(0), entryBytes));
    const path = parsePath(receipt.inclusion_path, "inclusion");
    const root = rootFromInclusion(H, receipt.leaf_index, cp.tree_size, leaf, path);
    if (!bytesEqual(root, cp.root)) fail("inclusion", "the inclusion path does not lead to the checkpoint root");
    pass("inclusion", `leaf ${receipt.leaf_index} of ${cp.tree_size}`);

    // 5. The checkpoint belongs to the pinned chain.
    if (!bytesEqual(cp.chain, chainId)) fail("chain", "the checkpoint is for another chain");
    pass("chain");

    // 6. The voters at the receipt's height: genesis voters, then each membership change the
    //    receipt proves, in order, each under a checkpoint signed by the voters before it.
    const nodes = new Map();
    for (const n of anchors.nodes) {
      nodes.set(n.id, { id: n.id, court: n.court, public_key: fromHex(n.public_key, 32), role: n.role });
    }
    const proofs = receipt.consortium;
    if (!Array.isArray(proofs)) fail("consortium", "consortium is not a list");
    let lastHeight = -1;
    for (const [i, el] of proofs.entries()) {
      const where = `consortium[${i}]`;
      if (!isMap(el)) fail("consortium", `${where} is not an object`);
      const mcp = parseCheckpoint(el.checkpoint, `${where}.checkpoint`);
      if (!bytesEqual(mcp.chain, chainId)) fail("consortium", `${where} is for another chain`);
      if (mcp.height <= lastHeight || mcp.height >= cp.height) {
        fail("consortium", `${where} is out of order or not below the receipt's height`);
      }
      lastHeight = mcp.height;
      exactKeys(el, ELEMENT_KEYS, "consortium", where);
      const { bytes: mBytes, envelope: mEnv } = decodeEntry(el.entry, "consortium");
      if (mEnv.payload.kind !== "membership" || !isMap(mEnv.payload.body)) {
        fail("consortium", `${where} is not a membership entry`);
      }
      if (!(await entrySignatureOk(chainId, mEnv))) {
        fail("consortium", `${where}: the entry's signature does not verify`);
      }
      const mPath = parsePath(el.inclusion_path, "consortium");
      const mRoot = rootFromInclusion(H, el.leaf_index, mcp.tree_size,
        H(concatBytes(Uint8Array.of(0), mBytes)), mPath);
      if (!bytesEqual(mRoot, mcp.root)) fail("consortium", `${where}: inclusion path does not lead to its root`);
      const voters = votersIn(nodes);
      const need = quorumSize(anchors.receipt_quorum, voters.size);
      const { signers } = await countSignatures(chainId, mcp, el.signatures, voters);
      if (signers.length < need) {
        fail("consortium", `${where}: ${signers.length} of ${voters.size} voters signed; ${need} needed`);
      }
      applyMembership(nodes, mEnv.payload.body);
    }
    pass("consortium", String(proofs.length));

    // 7. The courts' signatures on the checkpoint: a quorum of the voters in force.
    const voters = votersIn(nodes);
    const need = quorumSize(anchors.receipt_quorum, voters.size);
    const { signers, rejected } = await countSignatures(chainId, cp, receipt.signatures, voters);
    facts.signers = signers.map((s) => ({ id: s.id, court: s.court, public_key: toHex(s.public_key),
      fingerprint: toHex(sha256(s.public_key)) }));
    facts.rejected = rejected;
    facts.voters = voters.size;
    facts.quorum = need;
    facts.quorum_rule = anchors.receipt_quorum;
    if (signers.length < need) {
      fail("signatures", `${signers.length} of ${voters.size} voters' signatures verify; ${need} needed`);
    }
    pass("signatures", `${signers.length}/${voters.size}`);

    facts.height = cp.height;
    facts.anchored_at = cp.time;
    facts.tree_size = cp.tree_size;
    facts.leaf_index = receipt.leaf_index;
    return { ok: true, checks, failure: null, facts };
  } catch (e) {
    if (!(e instanceof CheckFailure)) {
      return { ok: false, checks, failure: { check: "internal", detail: String(e && e.message) }, facts };
    }
    checks.push({ id: e.check, ok: false, detail: e.message });
    return { ok: false, checks, failure: { check: e.check, detail: e.message }, facts };
  }
}
