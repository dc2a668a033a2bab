// The shard side of GET /v1/concepts/suggest: score this shard's concept paths against the
// query and return the best `limit`. The scan is bounded (maxScanKeys) and runs in chunks with
// a macrotask yield between them, so writes and reads queued on this shard's thread are
// served between chunks instead of waiting for the whole scan.
import { type ScoredPath, SuggestScorer, TopK } from "../domain/concept_suggest.js";
import type { ShardStore } from "../store/shard_store.js";

/** Keys scored between two yields of the shard thread. */
const SCAN_CHUNK_KEYS = 1_000;

export interface ShardSuggestResult {
  /** Best first (score descending, then path). */
  items: ScoredPath[];
  /** Concept paths scored. */
  scanned: number;
  /** False when the scan stopped at maxScanKeys before the end of the shard. */
  complete: boolean;
}

const yieldTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export async function suggestOnShard(
  store: ShardStore,
  q: string,
  limit: number,
  maxScanKeys: number,
): Promise<ShardSuggestResult> {
  const scorer = new SuggestScorer(q);
  const top = new TopK<ScoredPath>(limit);
  const visit = (path: string) => {
    const score = scorer.score(path);
    if (score > 0) top.offer({ path, score });
  };
  let scanned = 0;
  let after: string | null = null;
  let complete = false;
  while (scanned < maxScanKeys) {
    const want = Math.min(SCAN_CHUNK_KEYS, maxScanKeys - scanned);
    let seen = 0;
    after = store.conceptKeys(after, want, (path) => {
      seen++;
      visit(path);
    });
    scanned += seen;
    if (after === null) {
      complete = true;
      break;
    }
    if (scanned < maxScanKeys) await yieldTurn();
  }
  // Stopped exactly at the bound: complete only if nothing follows.
  if (!complete && after !== null) complete = store.conceptKeys(after, 1, () => {}) === null;
  return { items: top.items, scanned, complete };
}
