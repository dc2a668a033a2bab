// A deterministic encoded assertion for tests and benchmarks that drive a shard directly.
import { encodeAssertion } from "../../src/store/assertion_codec.js";

/** Assertion number i: id = i in hex, one of `concepts` concepts, value = i. */
export function sampleAssertion(i: number, concepts = 10_000, prefix = "bench"): Uint8Array {
  return encodeAssertion({
    id: i.toString(16).padStart(32, "0"),
    concept: `${prefix}/c${i % concepts}`,
    agent: `${prefix}-agent`,
    valueJson: String(i),
    confidence: 0.5,
    sources: [],
    validFromMs: null,
    validToMs: null,
    nonce: null,
    recordedAtMs: 1_700_000_000_000 + i,
    epoch: 0,
    shard: 0,
    lsn: 0,
    status: "active",
    supersedes: null,
    supersededBy: null,
    authorTrust: 0.5,
    quarantineReason: null,
  });
}
