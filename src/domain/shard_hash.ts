// Concept → shard routing. This function decides where data lives on disk, so it is part of
// the on-disk format: changing it moves data. It is versioned by SHARD_HASH_NAME, recorded in
// every data directory's manifest, and pinned by test vectors (test/domain.test.ts).
// See docs/sharding.md.
//
//   h     = FNV-1a 64 over the UTF-8 bytes of the canonical concept path
//           (offset basis 0xcbf29ce484222325, prime 0x100000001b3)
//   shard = JumpConsistentHash(h, shardCount)  (Lamping & Veach, 2014)
//
// 64-bit arithmetic is done on two unsigned 32-bit halves (hi, lo) so the hot path needs no
// BigInt allocation; every intermediate stays below 2^53 so doubles are exact. A BigInt
// reference implementation lives in the tests and is compared against this one.

import { MAX_SHARDS } from "./limits.js";

/** Name of the routing function, stored in the data directory manifest. */
export const SHARD_HASH_NAME = "fnv1a64-jump-v1";

const TWO_32 = 0x1_0000_0000;
const FNV_OFFSET_HI = 0xcbf29ce4;
const FNV_OFFSET_LO = 0x84222325;
// FNV prime 0x100000001b3 = 2^40 + 0x1b3.
const FNV_PRIME_LOW = 0x1b3;

// Jump hash LCG multiplier 2862933555777941757 = 0x27bb2ee687b0b0fd.
const JUMP_MUL_HI = 0x27bb2ee6;
const JUMP_MUL_LO = 0x87b0b0fd;

const utf8 = new TextEncoder();

/** FNV-1a 64 step state; reused to avoid allocating a pair per call. */
let outHi = 0;
let outLo = 0;

function fnv1a64Bytes(bytes: Uint8Array): void {
  let hi = FNV_OFFSET_HI;
  let lo = FNV_OFFSET_LO;
  for (let i = 0; i < bytes.length; i++) {
    lo = (lo ^ (bytes[i] as number)) >>> 0;
    // h * (2^40 + 0x1b3) mod 2^64
    const tLo = lo * FNV_PRIME_LOW; // < 2^41
    const carry = Math.floor(tLo / TWO_32);
    const tHi = hi * FNV_PRIME_LOW + carry + (lo & 0xffffff) * 256; // < 2^42
    lo = tLo >>> 0;
    hi = tHi >>> 0;
  }
  outHi = hi;
  outLo = lo;
}

function fnv1a64String(s: string): void {
  // Fast path: canonical concept paths are ASCII, where a char code is its UTF-8 byte.
  let hi = FNV_OFFSET_HI;
  let lo = FNV_OFFSET_LO;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x80) {
      fnv1a64Bytes(utf8.encode(s));
      return;
    }
    lo = (lo ^ c) >>> 0;
    const tLo = lo * FNV_PRIME_LOW;
    const carry = Math.floor(tLo / TWO_32);
    const tHi = hi * FNV_PRIME_LOW + carry + (lo & 0xffffff) * 256;
    lo = tLo >>> 0;
    hi = tHi >>> 0;
  }
  outHi = hi;
  outLo = lo;
}

/** 64-bit FNV-1a of the UTF-8 bytes of `path`, as an unsigned BigInt. */
export function conceptHash64(path: string): bigint {
  fnv1a64String(path);
  return (BigInt(outHi) << 32n) | BigInt(outLo);
}

/** The low 32 bits of conceptHash64(path) (an assertion id's hex digits 8..15). */
export function conceptHashLow32(path: string): number {
  fnv1a64String(path);
  return outLo;
}

/** 64-bit FNV-1a of `path` as 16 lowercase hex digits (no BigInt: used per written item). */
export function conceptHashHex(path: string): string {
  fnv1a64String(path);
  return outHi.toString(16).padStart(8, "0") + outLo.toString(16).padStart(8, "0");
}

/**
 * Jump Consistent Hash of a 64-bit key given as two unsigned 32-bit halves.
 * Returns a bucket in [0, buckets).
 */
export function jumpConsistentHash(keyHi: number, keyLo: number, buckets: number): number {
  if (!Number.isInteger(buckets) || buckets < 1) {
    throw new RangeError(`bucket count must be a positive integer, got ${buckets}`);
  }
  let hi = keyHi >>> 0;
  let lo = keyLo >>> 0;
  let b = -1;
  let j = 0;
  while (j < buckets) {
    b = j;
    // key = key * 2862933555777941757 + 1 (mod 2^64), in 16-bit limbs for the low product.
    const a0 = lo & 0xffff;
    const a1 = lo >>> 16;
    const b0 = JUMP_MUL_LO & 0xffff;
    const b1 = JUMP_MUL_LO >>> 16;
    const mid = a0 * b1 + a1 * b0; // < 2^33
    const low = a0 * b0 + (mid % 0x10000) * 0x10000 + 1; // < 2^34, "+1" folded in here
    const lowCarry = Math.floor(low / TWO_32);
    const high =
      a1 * b1 +
      Math.floor(mid / 0x10000) +
      lowCarry +
      Math.imul(lo, JUMP_MUL_HI) +
      Math.imul(hi, JUMP_MUL_LO);
    lo = low >>> 0;
    hi = high >>> 0;
    // j = floor((b + 1) * (2^31 / ((key >>> 33) + 1))), exactly as the reference in doubles.
    j = Math.floor((b + 1) * (2147483648 / ((hi >>> 1) + 1)));
  }
  return b;
}

/** The shard in [0, shardCount) that owns the canonical concept path `path`. */
export function shardForConcept(path: string, shardCount: number): number {
  if (!Number.isInteger(shardCount) || shardCount < 1 || shardCount > MAX_SHARDS) {
    throw new RangeError(`shard count must be an integer in [1, ${MAX_SHARDS}], got ${shardCount}`);
  }
  fnv1a64String(path);
  return jumpConsistentHash(outHi, outLo, shardCount);
}
