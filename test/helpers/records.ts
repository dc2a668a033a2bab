// A deterministic encoded assertion for tests and benchmarks that drive a shard directly.
import { conceptHashHex } from "../../src/domain/shard_hash.js";
import { encodeAssertion } from "../../src/store/assertion_codec.js";

/**
 * How sample ids look: "sequential" = i in hex (ids in LSN order, the cheapest case for an
 * id-ordered index); "routable" = shaped like the server's (src/domain/routable_id.ts): the
 * concept's hash, then a hash standing for the content digest, so ids land at random.
 */
export type SampleIds = "sequential" | "routable";

/** Assertion number i: one of `concepts` concepts, value i (or `valueJson`), id as `ids` says. */
export function sampleAssertion(
  i: number,
  concepts = 10_000,
  prefix = "bench",
  ids: SampleIds = "sequential",
  valueJson = String(i),
): Uint8Array {
  const concept = `${prefix}/c${i % concepts}`;
  return encodeAssertion({
    id:
      ids === "sequential"
        ? i.toString(16).padStart(32, "0")
        : conceptHashHex(concept) + conceptHashHex(`content-${i}`),
    concept,
    agent: `${prefix}-agent`,
    valueJson,
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

/** Assertion number i of its own concept, its value a JSON string of `valueChars` characters. */
export function bigAssertion(i: number, prefix: string, valueChars: number): Uint8Array {
  return sampleAssertion(
    i,
    Number.MAX_SAFE_INTEGER,
    prefix,
    "sequential",
    JSON.stringify("v".repeat(valueChars)),
  );
}
