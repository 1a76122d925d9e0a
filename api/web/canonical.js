// Canonical MessagePack (DESIGN §2), strict, and the byte helpers the verifier needs.
//
// The data model: bool, integer (−2^63 … 2^64−1), str (UTF-8), bytes (bin), list, map with str
// keys. No nil, no floats, no ext. Map keys sorted by their UTF-8 bytes; every integer, string,
// binary, array and map in the smallest family that holds it. decode() re-encodes what it read
// and refuses the input if the bytes differ: that one comparison refuses unsorted or duplicate
// keys and non-minimal forms, exactly as ledger/encoding.py does on the server.
//
// Values in JS: true/false; integers as Number when safe, else BigInt; str as string; bin as
// Uint8Array; list as Array; map as a null-prototype object (so a key such as "__proto__" is
// plain data).

export class EncodingError extends Error {}

const MAX_DEPTH = 32;
const utf8enc = new TextEncoder();
const utf8dec = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

const INT_MIN = -(2n ** 63n);
const UINT_MAX = 2n ** 64n - 1n;

/** Compare two byte arrays: negative, zero or positive, like memcmp then length. */
export function compareBytes(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/** True if two byte arrays are equal. */
export function bytesEqual(a, b) {
  return a.length === b.length && compareBytes(a, b) === 0;
}

/** Concatenate byte arrays. */
export function concatBytes(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Lowercase hex of bytes. */
export function toHex(bytes) {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

/** Bytes of lowercase hex (DESIGN §2: hex is lowercase); throws on anything else. */
export function fromHex(s, expectedLength = null) {
  if (typeof s !== "string" || !/^(?:[0-9a-f]{2})*$/.test(s)) {
    throw new EncodingError("not lowercase hex");
  }
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.substr(i * 2, 2), 16);
  if (expectedLength !== null && out.length !== expectedLength) {
    throw new EncodingError(`expected ${expectedLength} bytes, got ${out.length}`);
  }
  return out;
}

const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** Base64 (RFC 4648 §4, with padding) of bytes. */
export function toBase64(bytes) {
  let s = "";
  let i = 0;
  for (; i + 3 <= bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    s += B64[n >> 18] + B64[(n >> 12) & 63] + B64[(n >> 6) & 63] + B64[n & 63];
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i] << 16;
    s += B64[n >> 18] + B64[(n >> 12) & 63] + "==";
  } else if (rest === 2) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8);
    s += B64[n >> 18] + B64[(n >> 12) & 63] + B64[(n >> 6) & 63] + "=";
  }
  return s;
}

/**
 * Bytes of strict base64 (RFC 4648 §4 with padding). No whitespace, no missing padding, and the
 * unused bits of the last group must be zero: checked by re-encoding, so one value has one text.
 */
export function fromBase64(s) {
  if (typeof s !== "string" || s.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(s)) {
    throw new EncodingError("not base64 with padding (RFC 4648 §4)");
  }
  const pad = s.endsWith("==") ? 2 : s.endsWith("=") ? 1 : 0;
  const out = new Uint8Array((s.length / 4) * 3 - pad);
  let o = 0;
  for (let i = 0; i < s.length; i += 4) {
    const c = [0, 1, 2, 3].map((k) => (s[i + k] === "=" ? 0 : B64.indexOf(s[i + k])));
    const n = (c[0] << 18) | (c[1] << 12) | (c[2] << 6) | c[3];
    if (o < out.length) out[o++] = n >> 16;
    if (o < out.length) out[o++] = (n >> 8) & 255;
    if (o < out.length) out[o++] = n & 255;
  }
  if (toBase64(out) !== s) throw new EncodingError("non-canonical base64");
  return out;
}

// ---- encoder -------------------------------------------------------------------------------

class Writer {
  constructor() {
    this.buf = new Uint8Array(256);
    this.len = 0;
  }
  ensure(n) {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }
  byte(b) {
    this.ensure(1);
    this.buf[this.len++] = b;
  }
  bytes(b) {
    this.ensure(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
  uint(n, size) {
    this.ensure(size);
    const v = new DataView(this.buf.buffer, this.len, size);
    if (size === 1) v.setUint8(0, n);
    else if (size === 2) v.setUint16(0, n);
    else if (size === 4) v.setUint32(0, n);
    else v.setBigUint64(0, BigInt(n));
    this.len += size;
  }
  int(n, size) {
    this.ensure(size);
    const v = new DataView(this.buf.buffer, this.len, size);
    if (size === 1) v.setInt8(0, n);
    else if (size === 2) v.setInt16(0, n);
    else if (size === 4) v.setInt32(0, n);
    else v.setBigInt64(0, BigInt(n));
    this.len += size;
  }
  result() {
    return this.buf.slice(0, this.len);
  }
}

function writeLength(w, n, fixBase, fixMax, codes) {
  // codes: [8-bit, 16-bit, 32-bit] family markers; null where the family does not exist.
  if (fixBase !== null && n <= fixMax) w.byte(fixBase | n);
  else if (codes[0] !== null && n < 0x100) { w.byte(codes[0]); w.uint(n, 1); }
  else if (n < 0x10000) { w.byte(codes[1]); w.uint(n, 2); }
  else if (n <= 0xffffffff) { w.byte(codes[2]); w.uint(n, 4); }
  else throw new EncodingError("too long");
}

function writeInt(w, value) {
  const big = typeof value === "bigint" ? value : BigInt(value);
  if (big < INT_MIN || big > UINT_MAX) throw new EncodingError("integer out of range");
  if (big >= 0n) {
    if (big < 0x80n) w.byte(Number(big));
    else if (big < 0x100n) { w.byte(0xcc); w.uint(Number(big), 1); }
    else if (big < 0x10000n) { w.byte(0xcd); w.uint(Number(big), 2); }
    else if (big < 0x100000000n) { w.byte(0xce); w.uint(Number(big), 4); }
    else { w.byte(0xcf); w.uint(big, 8); }
  } else if (big >= -32n) {
    w.byte(Number(big) & 0xff);
  } else if (big >= -0x80n) { w.byte(0xd0); w.int(Number(big), 1); }
  else if (big >= -0x8000n) { w.byte(0xd1); w.int(Number(big), 2); }
  else if (big >= -0x80000000n) { w.byte(0xd2); w.int(Number(big), 4); }
  else { w.byte(0xd3); w.int(big, 8); }
}

function writeValue(w, value, depth) {
  if (depth > MAX_DEPTH) throw new EncodingError("nesting too deep");
  if (value === true) w.byte(0xc3);
  else if (value === false) w.byte(0xc2);
  else if (typeof value === "bigint") writeInt(w, value);
  else if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) {
      throw new EncodingError("floats (and unsafe integers as Number) are not allowed");
    }
    writeInt(w, value);
  } else if (typeof value === "string") {
    const b = utf8enc.encode(value);
    writeLength(w, b.length, 0xa0, 31, [0xd9, 0xda, 0xdb]);
    w.bytes(b);
  } else if (value instanceof Uint8Array) {
    writeLength(w, value.length, null, -1, [0xc4, 0xc5, 0xc6]);
    w.bytes(value);
  } else if (Array.isArray(value)) {
    writeLength(w, value.length, 0x90, 15, [null, 0xdc, 0xdd]);
    for (const x of value) writeValue(w, x, depth + 1);
  } else if (value !== null && typeof value === "object") {
    const keys = Object.keys(value).map((k) => [utf8enc.encode(k), k]);
    keys.sort((a, b) => compareBytes(a[0], b[0]));
    writeLength(w, keys.length, 0x80, 15, [null, 0xde, 0xdf]);
    for (const [kb, k] of keys) {
      writeLength(w, kb.length, 0xa0, 31, [0xd9, 0xda, 0xdb]);
      w.bytes(kb);
      if (value[k] === undefined) throw new EncodingError(`field ${k} is undefined`);
      writeValue(w, value[k], depth + 1);
    }
  } else {
    throw new EncodingError(`cannot encode ${value === null ? "nil" : typeof value}`);
  }
}

/** The canonical bytes of a value. */
export function encode(value) {
  const w = new Writer();
  writeValue(w, value, 1);
  return w.result();
}

// ---- decoder -------------------------------------------------------------------------------

class Reader {
  constructor(data) {
    this.data = data;
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    this.pos = 0;
  }
  need(n) {
    if (this.pos + n > this.data.length) throw new EncodingError("truncated input");
  }
  u8() { this.need(1); return this.data[this.pos++]; }
  u16() { this.need(2); const v = this.view.getUint16(this.pos); this.pos += 2; return v; }
  u32() { this.need(4); const v = this.view.getUint32(this.pos); this.pos += 4; return v; }
  take(n) { this.need(n); const b = this.data.slice(this.pos, this.pos + n); this.pos += n; return b; }
}

function intValue(big) {
  return big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER)
    ? Number(big) : big;
}

function readStr(r, n) {
  try {
    return utf8dec.decode(r.take(n));
  } catch (e) {
    throw new EncodingError("invalid UTF-8 in a string");
  }
}

function readValue(r, depth) {
  if (depth > MAX_DEPTH) throw new EncodingError("nesting too deep");
  const c = r.u8();
  if (c <= 0x7f) return c;
  if (c >= 0xe0) return c - 0x100;
  if (c >= 0xa0 && c <= 0xbf) return readStr(r, c & 0x1f);
  if (c >= 0x90 && c <= 0x9f) return readArray(r, c & 0x0f, depth);
  if (c >= 0x80 && c <= 0x8f) return readMap(r, c & 0x0f, depth);
  switch (c) {
    case 0xc2: return false;
    case 0xc3: return true;
    case 0xc4: return r.take(r.u8());
    case 0xc5: return r.take(r.u16());
    case 0xc6: return r.take(r.u32());
    case 0xcc: return r.u8();
    case 0xcd: return r.u16();
    case 0xce: return r.u32();
    case 0xcf: { r.need(8); const v = r.view.getBigUint64(r.pos); r.pos += 8; return intValue(v); }
    case 0xd0: { r.need(1); const v = r.view.getInt8(r.pos); r.pos += 1; return v; }
    case 0xd1: { r.need(2); const v = r.view.getInt16(r.pos); r.pos += 2; return v; }
    case 0xd2: { r.need(4); const v = r.view.getInt32(r.pos); r.pos += 4; return v; }
    case 0xd3: { r.need(8); const v = r.view.getBigInt64(r.pos); r.pos += 8; return intValue(v); }
    case 0xd9: return readStr(r, r.u8());
    case 0xda: return readStr(r, r.u16());
    case 0xdb: return readStr(r, r.u32());
    case 0xdc: return readArray(r, r.u16(), depth);
    case 0xdd: return readArray(r, r.u32(), depth);
    case 0xde: return readMap(r, r.u16(), depth);
    case 0xdf: return readMap(r, r.u32(), depth);
    case 0xc0: throw new EncodingError("nil is not allowed");
    case 0xca: case 0xcb: throw new EncodingError("floats are not allowed");
    default: throw new EncodingError(`type byte 0x${c.toString(16)} is not allowed (ext or unused)`);
  }
}

function readArray(r, n, depth) {
  // Each element takes at least one byte: refuse a declared length the input cannot hold
  // before allocating anything for it.
  r.need(n);
  const out = [];
  for (let i = 0; i < n; i++) out.push(readValue(r, depth + 1));
  return out;
}

function readMap(r, n, depth) {
  r.need(n * 2);
  const out = Object.create(null);
  for (let i = 0; i < n; i++) {
    const k = readValue(r, depth + 1);
    if (typeof k !== "string") throw new EncodingError("map key is not a string");
    if (Object.prototype.hasOwnProperty.call(out, k)) {
      throw new EncodingError(`duplicate map key ${k}`);
    }
    out[k] = readValue(r, depth + 1);
  }
  return out;
}

/**
 * Decode canonical bytes strictly: refuse trailing bytes, nil, floats, ext, non-string or
 * duplicate keys, and anything encode() would not have produced byte for byte.
 */
export function decode(data) {
  if (!(data instanceof Uint8Array)) throw new EncodingError("decode() takes a Uint8Array");
  if (data.length === 0) throw new EncodingError("empty input");
  const r = new Reader(data);
  const value = readValue(r, 1);
  if (r.pos !== data.length) throw new EncodingError("trailing bytes after the value");
  if (!bytesEqual(encode(value), data)) {
    throw new EncodingError("not canonical: unsorted keys, or a non-minimal integer or length");
  }
  return value;
}

/** True for a decoded map (a plain or null-prototype object, not an array or bytes). */
export function isMap(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof Uint8Array);
}
