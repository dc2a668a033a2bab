// JSON rendering of stored assertions, done on the shard thread so the front door only
// concatenates text. `value` is embedded as the stored canonical JSON, never re-parsed.
import type { AssertionRecord } from "../store/assertion_codec.js";

const str = JSON.stringify;

/**
 * Rendered JSON of frozen records (the shared decoded copies of record_cache.ts): a frozen
 * record cannot change, so neither can its JSON. Weak: entries go with their records.
 */
const renderedFrozen = new WeakMap<AssertionRecord, string>();

export function renderAssertion(r: AssertionRecord): string {
  if (!Object.isFrozen(r)) return render(r);
  let json = renderedFrozen.get(r);
  if (json === undefined) {
    json = render(r);
    renderedFrozen.set(r, json);
  }
  return json;
}

function render(r: AssertionRecord): string {
  return (
    `{"id":${str(r.id)},"concept":${str(r.concept)},"agent":${str(r.agent)},` +
    `"value":${r.valueJson},"confidence":${r.confidence},"sources":${str(r.sources)},` +
    `"valid_from":${r.validFromMs ?? "null"},"valid_to":${r.validToMs ?? "null"},` +
    `"nonce":${r.nonce === null ? "null" : str(r.nonce)},"recorded_at":${r.recordedAtMs},` +
    `"epoch":${r.epoch},"shard":${r.shard},"lsn":${r.lsn},"status":"${r.status}",` +
    `"supersedes":${r.supersedes === null ? "null" : str(r.supersedes)},` +
    `"superseded_by":${r.supersededBy === null ? "null" : str(r.supersededBy)},` +
    `"author_trust":${r.authorTrust},` +
    `"quarantine_reason":${r.quarantineReason == null ? "null" : str(r.quarantineReason)}}`
  );
}
