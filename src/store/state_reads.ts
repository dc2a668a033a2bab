// Lens reads over one shard's LMDB state, at a given LSN boundary: `asOfLsn` is either
// LIVE (everything applied) or the LSN an epoch recorded for this shard, and then every
// record, status change and vote above it is invisible. One rule serves both cases: an
// assertion's status as of L is its insert status folded with its status_log entries <= L.

import { MAX_LENS_SCAN_ASSERTIONS, MAX_SUBTREE_CONCEPTS_SCANNED } from "../domain/limits.js";
import {
  type AssertionRecord,
  type AssertionStatusName,
  CorruptRecordError,
  recordFromView,
  scratchAssertionView,
} from "./assertion_codec.js";
import { decodeLsnCursor, encodeCursor } from "./cursor.js";
import { recordCacheOf, rememberRecord } from "./record_cache.js";
import { type IndexKey, lsnOfId, type StateDbs } from "./shard_dbs.js";

/** No boundary: every applied entry is visible. */
export const LIVE_LSN = Number.MAX_SAFE_INTEGER;
const LSN_FLOOR = -1;

/** Range end (exclusive) that includes `lsn` itself. */
function through(scope: string, lsn: number): IndexKey {
  return [scope, lsn === LIVE_LSN ? LIVE_LSN : lsn + 0.5];
}

export interface EffectiveStatus {
  status: AssertionStatusName;
  supersededBy: string | null;
}

/** The record as it stood at asOfLsn: status and superseded_by from the status log. */
export function statusAsOf(dbs: StateDbs, rec: AssertionRecord, asOfLsn: number): EffectiveStatus {
  let status = rec.status;
  let supersededBy: string | null = null;
  for (const { value } of dbs.statusLog.getRange({
    start: [rec.id, LSN_FLOOR],
    end: through(rec.id, asOfLsn),
  })) {
    if (value.k === "supersede") {
      status = "superseded";
      supersededBy = value.o ?? null;
    } else if (value.k === "retract") status = "retracted";
    else if (value.k === "approve") status = "active";
    else status = "rejected";
  }
  return { status, supersededBy };
}

export function withStatus(rec: AssertionRecord, s: EffectiveStatus): AssertionRecord {
  if (s.status === rec.status && s.supersededBy === rec.supersededBy) return rec;
  return { ...rec, status: s.status, supersededBy: s.supersededBy };
}

export function readRecord(dbs: StateDbs, id: string): AssertionRecord | undefined {
  const lsn = lsnOfId(dbs.ids, id);
  return lsn === undefined ? undefined : readRecordAt(dbs, lsn);
}

/** The record stored at `lsn` (records are keyed by LSN; see shard_dbs.ts). */
/** The record stored at `lsn` (frozen: shared with every other reader on this thread). */
export function readRecordAt(dbs: StateDbs, lsn: number): AssertionRecord | undefined {
  const cache = recordCacheOf(dbs.records);
  const hit = cache.get(lsn);
  if (hit !== undefined) return hit;
  const buf = dbs.records.getBinaryFast(lsn);
  if (buf === undefined) return undefined;
  // recordFromView copies every field out, so the reused view is enough.
  return rememberRecord(cache, lsn, recordFromView(scratchAssertionView(buf)));
}

/**
 * The record an index entry at `lsn` names. Records are put before their index entries and
 * lmdb-js commits in order, so a missing one is corruption.
 */
export function mustReadAt(dbs: StateDbs, lsn: number, via: string): AssertionRecord {
  const rec = readRecordAt(dbs, lsn);
  if (rec === undefined) throw new CorruptRecordError(`${via}: no record at lsn ${lsn}`);
  return rec;
}

/** One assertion as of asOfLsn, or undefined when it did not exist yet. */
export function recordAsOf(
  dbs: StateDbs,
  id: string,
  asOfLsn: number,
): AssertionRecord | undefined {
  const rec = readRecord(dbs, id);
  if (rec === undefined || rec.lsn > asOfLsn) return undefined;
  return withStatus(rec, statusAsOf(dbs, rec, asOfLsn));
}

export interface VoteTally {
  up: number;
  down: number;
  /** Σ voter weight × (+1 | −1) over each voter's newest vote. */
  weighted: number;
  /** True when MAX votes were read and older ones ignored. */
  truncated: boolean;
}

export interface VoteEntry {
  voter: string;
  vote: "up" | "down";
  weight: number;
  lsn: number;
  at: number;
}

/**
 * Each voter's newest vote on `id` up to asOfLsn (one vote per agent: a new one replaces).
 * Live: from vote_now, at most `maxVotes` voters. At an epoch: the vote log read newest
 * first, so when more than `maxVotes` vote records exist the oldest are the ones ignored.
 */
export function votesAsOf(
  dbs: StateDbs,
  id: string,
  asOfLsn: number,
  maxVotes: number,
): { byVoter: Map<string, VoteEntry>; truncated: boolean } {
  const byVoter = new Map<string, VoteEntry>();
  if (asOfLsn === LIVE_LSN) return votesNow(dbs, id, maxVotes, byVoter);
  let read = 0;
  for (const { key, value } of dbs.votes.getRange({
    start: through(id, asOfLsn),
    end: [id, LSN_FLOOR],
    reverse: true,
    limit: maxVotes + 1,
  })) {
    if (key[0] !== id) continue;
    if (++read > maxVotes) return { byVoter, truncated: true };
    if (byVoter.has(value.a)) continue;
    byVoter.set(value.a, {
      voter: value.a,
      vote: value.d === 1 ? "up" : "down",
      weight: value.w,
      lsn: key[1],
      at: value.at,
    });
  }
  return { byVoter, truncated: false };
}

/** Live votes: one vote_now entry per voter (in voter order), at most maxVotes voters. */
function votesNow(
  dbs: StateDbs,
  id: string,
  maxVotes: number,
  byVoter: Map<string, VoteEntry>,
): { byVoter: Map<string, VoteEntry>; truncated: boolean } {
  // [id] sorts before every [id, voter]; ids all have 32 digits, so the next id follows.
  for (const { key, value } of dbs.voteNow.getRange({ start: [id], limit: maxVotes + 1 })) {
    if (key[0] !== id) break;
    if (byVoter.size === maxVotes) return { byVoter, truncated: true };
    byVoter.set(key[1], {
      voter: key[1],
      vote: value.d === 1 ? "up" : "down",
      weight: value.w,
      lsn: value.l,
      at: value.at,
    });
  }
  return { byVoter, truncated: false };
}

export function tallyVotes(dbs: StateDbs, id: string, asOfLsn: number, max: number): VoteTally {
  const { byVoter, truncated } = votesAsOf(dbs, id, asOfLsn, max);
  const tally: VoteTally = { up: 0, down: 0, weighted: 0, truncated };
  for (const v of byVoter.values()) {
    if (v.vote === "up") {
      tally.up++;
      tally.weighted += v.weight;
    } else {
      tally.down++;
      tally.weighted -= v.weight;
    }
  }
  return tally;
}

/**
 * Assertions of `concept` that were active at asOfLsn, newest first, visiting at most
 * maxScan index entries; stops after `want` matches. `truncated` says the scan bound hit.
 */
export function activeAsOf(
  dbs: StateDbs,
  concept: string,
  asOfLsn: number,
  want: number,
  maxScan: number,
): { items: AssertionRecord[]; truncated: boolean } {
  const items: AssertionRecord[] = [];
  let scanned = 0;
  // Live: the index of active assertions, so held or retracted ones cannot use up the scan.
  // At an epoch: every assertion of the concept up to then, checked one by one.
  const live = asOfLsn === LIVE_LSN;
  for (const key of (live ? dbs.active : dbs.byConcept).getKeys({
    start: through(concept, asOfLsn),
    end: [concept, LSN_FLOOR],
    reverse: true,
  })) {
    if (key[0] !== concept) continue;
    if (++scanned > maxScan) return { items, truncated: true };
    const rec = mustReadAt(dbs, key[1], live ? "active" : "by_concept");
    const s = statusAsOf(dbs, rec, asOfLsn);
    if (s.status !== "active") continue;
    items.push(withStatus(rec, s));
    if (items.length >= want) break;
  }
  return { items, truncated: false };
}

/**
 * Assertions of `concept` (any status, as they stood at asOfLsn), newest first, with an LSN
 * below `beforeLsn` (null: from the newest), at most `limit`.
 */
function historyFrom(
  dbs: StateDbs,
  concept: string,
  asOfLsn: number,
  beforeLsn: number | null,
  limit: number,
): AssertionRecord[] {
  const bounded = beforeLsn !== null && beforeLsn <= asOfLsn;
  const items: AssertionRecord[] = [];
  for (const key of dbs.byConcept.getKeys({
    start: bounded ? [concept, beforeLsn as number] : through(concept, asOfLsn),
    exclusiveStart: bounded,
    end: [concept, LSN_FLOOR],
    reverse: true,
    limit,
  })) {
    if (key[0] !== concept) continue;
    const rec = mustReadAt(dbs, key[1], "by_concept");
    items.push(withStatus(rec, statusAsOf(dbs, rec, asOfLsn)));
  }
  return items;
}

/** Every assertion of `concept` (any status) up to asOfLsn, newest first, paged. */
export function historyAsOf(
  dbs: StateDbs,
  concept: string,
  asOfLsn: number,
  limit: number,
  cursor: string | null,
): { items: AssertionRecord[]; nextCursor: string | null } {
  const before = cursor === null ? null : decodeLsnCursor(cursor, "h1", concept);
  const items = historyFrom(dbs, concept, asOfLsn, before, limit + 1);
  const more = items.length > limit;
  if (more) items.length = limit;
  const last = items[items.length - 1];
  return {
    items,
    nextCursor: more && last !== undefined ? encodeCursor("h1", concept, last.lsn) : null,
  };
}

/**
 * The history of every concept under `prefix`, ordered by concept, newest first within one,
 * starting after position `after` (a concept and an LSN in it; LSN 0 = after the whole
 * concept), at most `want` assertions. `lastScanned` is set when the concept scan bound
 * stopped it before `want` were found, so a caller merging shards can resume there.
 */
export function historyUnderAsOf(
  dbs: StateDbs,
  prefix: string,
  after: { concept: string; lsn: number } | null,
  want: number,
  asOfLsn: number,
): { items: AssertionRecord[]; lastScanned: string | null } {
  const items: AssertionRecord[] = [];
  if (after !== null && after.lsn > 0) {
    items.push(...historyFrom(dbs, after.concept, asOfLsn, after.lsn, want));
  }
  let cursor = after?.concept ?? null;
  let scanned = 0;
  while (items.length < want) {
    if (scanned >= MAX_SUBTREE_CONCEPTS_SCANNED) return { items, lastScanned: cursor };
    const batch = conceptsUnder(dbs, prefix, cursor, Math.min(1000, want - items.length + 16));
    if (batch.length === 0) break;
    for (const concept of batch) {
      scanned++;
      cursor = concept;
      items.push(...historyFrom(dbs, concept, asOfLsn, null, want - items.length));
      if (items.length >= want) break;
    }
  }
  return { items, lastScanned: null };
}

/**
 * Concept paths equal to `prefix` or under `prefix/` (every concept when prefix is ""),
 * ascending, after `after` (exclusive), at most `want`. Merges the two key sets that name
 * concepts: `latest` (concepts with an active insert) and `concepts_held` (the others).
 */
export function conceptsUnder(
  dbs: StateDbs,
  prefix: string,
  after: string | null,
  want: number,
): string[] {
  const lo = prefix === "" ? "" : `${prefix}/`;
  const hi = prefix === "" ? undefined : `${prefix}0`;
  const pick = (keys: Iterable<string>): string[] => {
    const out: string[] = [];
    for (const k of keys) {
      if (out.length >= want) break;
      out.push(k);
    }
    return out;
  };
  const fromDb = (db: StateDbs["latest"] | StateDbs["conceptsHeld"]): string[] => {
    const out: string[] = [];
    if (prefix !== "" && (after === null || after < prefix) && db.doesExist(prefix))
      out.push(prefix);
    const start = after !== null && after > lo ? after : lo;
    for (const key of db.getKeys({ start, end: hi, limit: want + 1 })) {
      if (key === after || (prefix !== "" && !key.startsWith(lo))) continue;
      out.push(key);
      if (out.length >= want) break;
    }
    return out;
  };
  const merged = new Set([...fromDb(dbs.latest), ...fromDb(dbs.conceptsHeld)]);
  return pick([...merged].sort());
}

/** Newest assertion of `concept` active at asOfLsn (bounded scan, newest first). */
export function latestAsOf(
  dbs: StateDbs,
  concept: string,
  asOfLsn: number,
): AssertionRecord | undefined {
  return activeAsOf(dbs, concept, asOfLsn, 1, MAX_LENS_SCAN_ASSERTIONS).items[0];
}

/**
 * Up to `want` concepts under `prefix` (after `after`, ascending) that have an active
 * assertion at asOfLsn, with that assertion. `lastScanned` is the last concept looked at, so
 * a caller can resume when the scan bound stopped it before `want` were found.
 */
export function latestUnderAsOf(
  dbs: StateDbs,
  prefix: string,
  after: string | null,
  want: number,
  asOfLsn: number,
): { items: AssertionRecord[]; lastScanned: string | null } {
  const items: AssertionRecord[] = [];
  let cursor = after;
  let scanned = 0;
  while (items.length < want && scanned < MAX_SUBTREE_CONCEPTS_SCANNED) {
    const batch = conceptsUnder(dbs, prefix, cursor, Math.min(1000, want - items.length + 16));
    if (batch.length === 0) return { items, lastScanned: null };
    for (const concept of batch) {
      scanned++;
      cursor = concept;
      const rec = latestAsOf(dbs, concept, asOfLsn);
      if (rec !== undefined) items.push(rec);
      if (items.length >= want) break;
    }
  }
  return { items, lastScanned: cursor };
}
