// SHA-256 (FIPS 180-4) and SM3 (GB/T 32905-2016) written for this page, both incremental.
//
// Why our own: WebCrypto has no SM3, offers SHA-256 only in a secure context, and has no
// incremental digest, so a file larger than memory (on-site video) could not be hashed with it.
// Both hashes share the Merkle–Damgård frame: 64-byte blocks, a 0x80 pad byte and the message
// length in bits as a 64-bit big-endian integer (FIPS 180-4 §5.1.1; GB/T 32905 §5.2).

const K256 = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const IV256 = [
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];
const IVSM3 = [
  0x7380166f, 0x4914b2b9, 0x172442d7, 0xda8a0600, 0xa96f30bc, 0x163138aa, 0xe38dee4d, 0xb0fb0e4e,
];

const rotl = (x, n) => (x << n) | (x >>> (32 - n));
const rotr = (x, n) => (x >>> n) | (x << (32 - n));

// (K256 is an Int32Array on purpose: signed 32-bit values keep V8 on its small-integer path.)
// FIPS 180-4 §6.2.2: one SHA-256 compression of the 64-byte block at data[off..off+64).
function compress256(state, w, data, off) {
  for (let i = 0; i < 16; i++, off += 4) {
    w[i] = (data[off] << 24) | (data[off + 1] << 16) | (data[off + 2] << 8) | data[off + 3];
  }
  for (let i = 16; i < 64; i++) {
    const a = w[i - 15];
    const b = w[i - 2];
    const s0 = rotr(a, 7) ^ rotr(a, 18) ^ (a >>> 3);
    const s1 = rotr(b, 17) ^ rotr(b, 19) ^ (b >>> 10);
    w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
  }
  let a = state[0], b = state[1], c = state[2], d = state[3];
  let e = state[4], f = state[5], g = state[6], h = state[7];
  for (let i = 0; i < 64; i++) {
    const t1 = (h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i]) | 0;
    const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    h = g; g = f; f = e; e = (d + t1) | 0;
    d = c; c = b; b = a; a = (t1 + t2) | 0;
  }
  state[0] = (state[0] + a) | 0; state[1] = (state[1] + b) | 0;
  state[2] = (state[2] + c) | 0; state[3] = (state[3] + d) | 0;
  state[4] = (state[4] + e) | 0; state[5] = (state[5] + f) | 0;
  state[6] = (state[6] + g) | 0; state[7] = (state[7] + h) | 0;
}

const T_LOW = 0x79cc4519;
const T_HIGH = 0x7a879d8a;
const p0 = (x) => x ^ rotl(x, 9) ^ rotl(x, 17);
const p1 = (x) => x ^ rotl(x, 15) ^ rotl(x, 23);

// GB/T 32905-2016 §5.3: message expansion (W0..W67, W'0..W'63) and the compression CF.
function compressSm3(state, w, data, off) {
  for (let i = 0; i < 16; i++, off += 4) {
    w[i] = (data[off] << 24) | (data[off + 1] << 16) | (data[off + 2] << 8) | data[off + 3];
  }
  for (let j = 16; j < 68; j++) {
    w[j] = p1(w[j - 16] ^ w[j - 9] ^ rotl(w[j - 3], 15)) ^ rotl(w[j - 13], 7) ^ w[j - 6];
  }
  let a = state[0], b = state[1], c = state[2], d = state[3];
  let e = state[4], f = state[5], g = state[6], h = state[7];
  for (let j = 0; j < 64; j++) {
    const a12 = rotl(a, 12);
    const t = j < 16 ? T_LOW : T_HIGH;
    const ss1 = rotl((a12 + e + rotl(t, j % 32)) | 0, 7);
    const ss2 = ss1 ^ a12;
    const ff = j < 16 ? a ^ b ^ c : (a & b) | (a & c) | (b & c);
    const gg = j < 16 ? e ^ f ^ g : (e & f) | (~e & g);
    const tt1 = (ff + d + ss2 + (w[j] ^ w[j + 4])) | 0;
    const tt2 = (gg + h + ss1 + w[j]) | 0;
    d = c; c = rotl(b, 9); b = a; a = tt1;
    h = g; g = rotl(f, 19); f = e; e = p0(tt2);
  }
  state[0] ^= a; state[1] ^= b; state[2] ^= c; state[3] ^= d;
  state[4] ^= e; state[5] ^= f; state[6] ^= g; state[7] ^= h;
}

/** An incremental hash over 64-byte blocks: update(bytes)… then digest() → 32 bytes. */
class BlockHash {
  constructor(iv, compress, wordCount) {
    this.state = new Int32Array(iv);
    this.compress = compress;
    this.w = new Int32Array(wordCount);
    this.buf = new Uint8Array(64);
    this.bufLen = 0;
    this.length = 0; // bytes hashed so far (a Number: exact up to 2^53, i.e. 8 PiB)
    this.done = false;
  }

  update(data) {
    if (this.done) throw new Error("digest() already called");
    if (!(data instanceof Uint8Array)) throw new TypeError("update() takes a Uint8Array");
    let off = 0;
    const n = data.length;
    this.length += n;
    if (this.bufLen > 0) {
      const take = Math.min(64 - this.bufLen, n);
      this.buf.set(data.subarray(0, take), this.bufLen);
      this.bufLen += take;
      off = take;
      if (this.bufLen < 64) return this;
      this.compress(this.state, this.w, this.buf, 0);
      this.bufLen = 0;
    }
    for (; off + 64 <= n; off += 64) this.compress(this.state, this.w, data, off);
    if (off < n) {
      this.buf.set(data.subarray(off), 0);
      this.bufLen = n - off;
    }
    return this;
  }

  digest() {
    if (this.done) throw new Error("digest() already called");
    const bits = this.length * 8;
    const pad = new Uint8Array(this.bufLen < 56 ? 64 - this.bufLen : 128 - this.bufLen);
    pad[0] = 0x80;
    const view = new DataView(pad.buffer);
    // The bit length as 64-bit big-endian; split because bit operators are 32-bit in JS.
    view.setUint32(pad.length - 8, Math.floor(bits / 0x100000000));
    view.setUint32(pad.length - 4, bits >>> 0);
    this.update(pad);
    this.done = true;
    const out = new Uint8Array(32);
    const ov = new DataView(out.buffer);
    for (let i = 0; i < 8; i++) ov.setInt32(i * 4, this.state[i]);
    return out;
  }
}

/** A new incremental SHA-256. */
export function newSha256() {
  return new BlockHash(IV256, compress256, 64);
}

/** A new incremental SM3. */
export function newSm3() {
  return new BlockHash(IVSM3, compressSm3, 68);
}

/** SHA-256 of bytes, computed here (no WebCrypto needed). */
export function sha256(data) {
  return newSha256().update(data).digest();
}

/** SM3 of bytes (GB/T 32905-2016). */
export function sm3(data) {
  return newSm3().update(data).digest();
}

/** The chain hash H named by a genesis file's hash_alg, as a function of bytes. */
export function chainHash(alg) {
  if (alg === "sha256") return sha256;
  if (alg === "sm3") return sm3;
  throw new Error(`unknown hash algorithm ${alg}`);
}

/** Files above this size are hashed incrementally in chunks rather than read whole. */
export const WHOLE_FILE_LIMIT = 256 * 1024 * 1024;
const CHUNK = 8 * 1024 * 1024;

/**
 * SHA-256 of a File or Blob, as 32 bytes. Small files go to WebCrypto when it is there (fast,
 * native); large ones, or any file outside a secure context, go through our incremental SHA-256
 * over File.slice chunks, so memory stays bounded. The content never leaves this machine.
 * onProgress(doneBytes, totalBytes) is called after each chunk.
 */
export async function sha256File(file, { onProgress = null, limit = WHOLE_FILE_LIMIT,
  chunk = CHUNK } = {}) {
  const subtle = globalThis.crypto && globalThis.crypto.subtle;
  if (subtle && file.size <= limit) {
    const buf = await file.arrayBuffer();
    const d = new Uint8Array(await subtle.digest("SHA-256", buf));
    if (onProgress) onProgress(file.size, file.size);
    return d;
  }
  const h = newSha256();
  for (let off = 0; off < file.size; off += chunk) {
    const part = new Uint8Array(await file.slice(off, off + chunk).arrayBuffer());
    h.update(part);
    if (onProgress) onProgress(Math.min(off + chunk, file.size), file.size);
    // Yield to the event loop so the page stays responsive and the progress bar repaints.
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  return h.digest();
}
