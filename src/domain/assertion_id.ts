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

import { createHash } from "node:crypto";

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

class Writer {
  private readonly chunks: Buffer[] = [];
  bytes(b: Buffer): void {
    this.chunks.push(b);
  }
  u8(v: number): void {
    this.chunks.push(Buffer.from([v]));
  }
  u32(v: number): void {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(v, 0);
    this.chunks.push(b);
  }
  f64(v: number): void {
    const b = Buffer.allocUnsafe(8);
    // Normalize -0 so it cannot produce a distinct id for the same number.
    b.writeDoubleBE(Object.is(v, -0) ? 0 : v, 0);
    this.chunks.push(b);
  }
  str(s: string): void {
    const b = Buffer.from(s, "utf8");
    this.u32(b.length);
    this.chunks.push(b);
  }
  digest(): Buffer {
    const h = createHash("sha256");
    for (const c of this.chunks) h.update(c);
    return h.digest();
  }
}

function assertFiniteNumber(name: string, v: number): void {
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new TypeError(`assertionId: ${name} must be a finite number, got ${String(v)}`);
  }
}

/** The 32-hex-character id of an assertion. Deterministic; pure. */
export function assertionId(input: AssertionIdInput): string {
  assertFiniteNumber("confidence", input.confidence);
  const w = new Writer();
  w.bytes(DOMAIN_TAG);
  w.str(input.agent);
  w.str(input.concept);
  w.str(input.valueJson);
  w.f64(input.confidence);
  const sources = input.sources ?? [];
  w.u32(sources.length);
  for (const s of sources) w.str(s);
  for (const [name, t] of [
    ["validFromMs", input.validFromMs],
    ["validToMs", input.validToMs],
  ] as const) {
    if (t === undefined || t === null) {
      w.u8(0);
    } else {
      assertFiniteNumber(name, t);
      w.u8(1);
      w.f64(t);
    }
  }
  if (input.nonce === undefined || input.nonce === null) {
    w.u8(0);
  } else {
    w.u8(1);
    w.str(input.nonce);
  }
  return w
    .digest()
    .subarray(0, ASSERTION_ID_HEX_LENGTH / 2)
    .toString("hex");
}

/** True if `s` looks like an assertion id (32 lowercase hex characters). */
export function isAssertionId(s: string): boolean {
  return ASSERTION_ID_PATTERN.test(s);
}
