// Assertion ids are derived from content + author + nonce (DESIGN §3), so a client that
// retries the same write gets the same id back (and the store answers `duplicate: true`)
// instead of creating a second copy; a client that really means "a second, identical claim"
// sends a different nonce.
//
// id = lowercase hex of the first 16 bytes of SHA-256 over this serialization (v1):
//
//   "stemedb.assertion-id.v1\0"
//   str(agent) str(concept) str(valueJson) f64be(confidence)
//   u32be(sources.length) str(source)…
//   opt_i(validFromMs) opt_i(validToMs) opt_s(nonce)
//
//   str(s)   = u32be(utf8 byte length) ‖ utf8 bytes
//   opt_i(x) = 0x00 if absent, else 0x01 ‖ f64be(x)   (times are integers ≤ 2^53: exact)
//   opt_s(x) = 0x00 if absent, else 0x01 ‖ str(x)
//
// Every variable-length field is length-prefixed and every optional field carries a presence
// byte, so no two different inputs serialize to the same bytes. `concept` must already be
// canonical and `valueJson` must be canonicalJson(value); the caller normalizes first, so
// "Foo/Bar" and "foo/bar" (or {"a":1,"b":2} and {"b":2,"a":1}) give the same id.
// Changing this serialization changes ids of future writes and breaks retry de-duplication
// across an upgrade: bump the version tag and keep the old one readable if ever needed.

import { hash } from "node:crypto";

const DOMAIN_TAG = Buffer.from("stemedb.assertion-id.v1\0", "utf8");

/** Length of an assertion id in hex characters (16 bytes). */
export const ASSERTION_ID_HEX_LENGTH = 32;
const ASSERTION_ID_PATTERN = /^[0-9a-f]{32}$/;

export interface AssertionIdInput {
  /** The writing key's principal (never taken from the request body). */
  agent: string;
  /** Canonical concept path. */
  concept: string;
  /** canonicalJson(value). */
  valueJson: string;
  confidence: number;
  sources?: readonly string[] | null;
  validFromMs?: number | null;
  validToMs?: number | null;
  nonce?: string | null;
}

/**
 * Serializes into one reused scratch buffer and hashes it with a single update: the id is
 * computed for every item of every write on the main thread, so no per-field allocation.
 */
class Writer {
  private buf = Buffer.allocUnsafe(64 * 1024);
  private at = 0;
  reset(worstCaseBytes: number): void {
    if (worstCaseBytes > this.buf.length) this.buf = Buffer.allocUnsafe(worstCaseBytes);
    this.at = 0;
  }
  bytes(b: Buffer): void {
    b.copy(this.buf, this.at);
    this.at += b.length;
  }
  u8(v: number): void {
    this.buf[this.at++] = v;
  }
  u32(v: number): void {
    this.buf.writeUInt32BE(v, this.at);
    this.at += 4;
  }
  f64(v: number): void {
    // Normalize -0 so it cannot produce a distinct id for the same number.
    this.buf.writeDoubleBE(Object.is(v, -0) ? 0 : v, this.at);
    this.at += 8;
  }
  str(s: string): void {
    const n = this.buf.write(s, this.at + 4, "utf8");
    this.buf.writeUInt32BE(n, this.at);
    this.at += 4 + n;
  }
  /** Lowercase hex SHA-256 (one-shot crypto.hash: no Hash object per id). */
  digestHex(): string {
    return hash("sha256", this.buf.subarray(0, this.at), "hex");
  }
}

const writer = new Writer();

function assertFiniteNumber(name: string, v: number): void {
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new TypeError(`assertionId: ${name} must be a finite number, got ${String(v)}`);
  }
}

/** The 32-hex-character id of an assertion. Deterministic; pure. */
export function assertionId(input: AssertionIdInput): string {
  assertFiniteNumber("confidence", input.confidence);
  const sources = input.sources ?? [];
  // Worst case: 3 UTF-8 bytes per UTF-16 code unit, plus prefixes and fixed fields.
  let chars =
    input.agent.length + input.concept.length + input.valueJson.length + (input.nonce?.length ?? 0);
  for (const src of sources) chars += src.length;
  const w = writer;
  w.reset(DOMAIN_TAG.length + 3 * chars + 5 * (sources.length + 8) + 32);
  w.bytes(DOMAIN_TAG);
  w.str(input.agent);
  w.str(input.concept);
  w.str(input.valueJson);
  w.f64(input.confidence);
  w.u32(sources.length);
  for (const src of sources) w.str(src);
  const validFromMs = input.validFromMs;
  const validToMs = input.validToMs;
  if (validFromMs === undefined || validFromMs === null) w.u8(0);
  else {
    assertFiniteNumber("validFromMs", validFromMs);
    w.u8(1);
    w.f64(validFromMs);
  }
  if (validToMs === undefined || validToMs === null) w.u8(0);
  else {
    assertFiniteNumber("validToMs", validToMs);
    w.u8(1);
    w.f64(validToMs);
  }
  if (input.nonce === undefined || input.nonce === null) {
    w.u8(0);
  } else {
    w.u8(1);
    w.str(input.nonce);
  }
  return w.digestHex().slice(0, ASSERTION_ID_HEX_LENGTH);
}

/** True if `s` looks like an assertion id (32 lowercase hex characters). */
export function isAssertionId(s: string): boolean {
  return ASSERTION_ID_PATTERN.test(s);
}
