// Assertion ids are routable: the first 16 hex digits are the 64-bit FNV-1a hash of the
// canonical concept (the shard hash's key), the last 16 are the first 8 bytes of the
// content digest (agent, concept, value, confidence, sources, validity, nonce). So any
// thread can find the owning shard from the id alone, for any shard count, and a retried
// write still maps to the same id.
import { type AssertionIdInput, assertionId } from "./assertion_id.js";
import { conceptHashHex, jumpConsistentHash } from "./shard_hash.js";

export const ROUTABLE_ID_PATTERN = /^[0-9a-f]{32}$/;

export function routableAssertionId(input: AssertionIdInput): string {
  return conceptHashHex(input.concept) + assertionId(input).slice(0, 16);
}

export function shardForAssertionId(id: string, shardCount: number): number {
  if (!ROUTABLE_ID_PATTERN.test(id)) throw new RangeError(`not an assertion id: ${id}`);
  const hi = Number.parseInt(id.slice(0, 8), 16);
  const lo = Number.parseInt(id.slice(8, 16), 16);
  return jumpConsistentHash(hi, lo, shardCount);
}
