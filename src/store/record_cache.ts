// Decoded assertion records by LSN, per thread and per shard database. A record never
// changes once stored: apply.ts puts each LSN's bytes once, as received, and status changes
// live in the status log. So a decoded copy (frozen, shared by every reader on this thread)
// stays right for as long as the process runs; the cache only bounds how many it keeps.
// Reading a `latest` answer decodes and renders the same hot records again and again: the
// cache and the rendered JSON (render.ts) take that work off every repeat.
import type { AssertionRecord } from "./assertion_codec.js";

/** Records kept per shard database per thread (≈ 2 KB each with small values and the JSON). */
export const RECORD_CACHE_ENTRIES = 8192;

const caches = new WeakMap<object, Map<number, AssertionRecord>>();

/** The cache of one records database (keyed by the database object: one per open env). */
export function recordCacheOf(recordsDb: object): Map<number, AssertionRecord> {
  let cache = caches.get(recordsDb);
  if (cache === undefined) {
    cache = new Map();
    caches.set(recordsDb, cache);
  }
  return cache;
}

/** Freezes `rec` (and its sources) and keeps it, evicting the oldest entry past the bound. */
export function rememberRecord(
  cache: Map<number, AssertionRecord>,
  lsn: number,
  rec: AssertionRecord,
): AssertionRecord {
  Object.freeze(rec.sources);
  Object.freeze(rec);
  if (cache.size >= RECORD_CACHE_ENTRIES) {
    const oldest = cache.keys().next();
    if (oldest.done !== true) cache.delete(oldest.value);
  }
  cache.set(lsn, rec);
  return rec;
}
