// How WAL records become LMDB state: the record kinds, the entry a writer hands the store,
// the batch checks, and the puts of one entry into a shard's databases. Used inside one
// write transaction (replay) or one lmdb-js async batch (the hot path); the caller owns the
// transaction and the applied LSN. Kept apart from shard_store.ts so the rules that define
// the materialized state read in one place.
//
// Replay safety: records are put before their id and index entries, and every put is idempotent
// for the same LSN, so re-applying an entry after a crash between commits is harmless.
import { ROUTABLE_ID_PATTERN } from "../domain/routable_id.js";
import {
  decodeSourceRecord,
  decodeStateEvent,
  type SourceRecord,
  type StateEvent,
} from "../domain/state_events.js";
import {
  assertionView,
  CorruptRecordError,
  scratchAssertionView,
  statusFromFb,
} from "./assertion_codec.js";
import {
  EMPTY_INDEX_VALUE,
  type IndexKey,
  idKeyOfChecked,
  lsnOfId,
  type ShardDbs,
  type StatusLogValue,
} from "./shard_dbs.js";

export const WalRecordKind = { AssertionInsert: 1, StateEvent: 2, SourceInsert: 3 } as const;

// Bounds one LMDB write transaction (and how long it holds the shard thread).
export const MAX_APPLY_BATCH_ENTRIES = 10_000;

/** What the store needs of an assertion to index it (decoded once by the writer). */
export interface AssertionFacts {
  id: string;
  concept: string;
  agent: string;
  active: boolean;
  supersedes: string | null;
  /**
   * LSN of the `supersedes` target. An async apply cannot look it up (the target may not be
   * committed yet), so the live writer and replay pass it; when unset, apply reads `ids`,
   * which only a synchronous transaction sees complete.
   */
  supersedesLsn?: number;
}

export interface ApplyEntry {
  lsn: number;
  kind: number;
  payload: Uint8Array;
  /**
   * Set by a writer that already decoded and checked the record (ShardCore on the hot path):
   * the store then trusts these instead of decoding the FlatBuffer again, and skips the
   * duplicate lookup (the writer deduplicated). Replay leaves it unset.
   */
  decoded?: AssertionFacts;
  /** StateEvent entries: the decoded event (replay decodes it from the payload). */
  event?: StateEvent;
  /** Status events: the target's concept (passed along as `supersedesLsn` is, and why). */
  targetConcept?: string;
  /** SourceInsert entries: the decoded source. */
  source?: SourceRecord;
}

/** Checks bounds, kinds and LSN order (each above `appliedLsn`); returns the last LSN. */
export function checkBatch(
  entries: ReadonlyArray<ApplyEntry>,
  appliedLsn: number,
  shardId: number,
): number {
  if (entries.length > MAX_APPLY_BATCH_ENTRIES) {
    throw new RangeError(`batch of ${entries.length} entries exceeds ${MAX_APPLY_BATCH_ENTRIES}`);
  }
  let prev = appliedLsn;
  for (const e of entries) {
    if (!Number.isSafeInteger(e.lsn) || e.lsn <= prev) {
      throw new RangeError(
        `shard ${shardId}: lsn ${e.lsn} is not greater than ${prev} (applied ${appliedLsn})`,
      );
    }
    if (
      e.kind !== WalRecordKind.AssertionInsert &&
      e.kind !== WalRecordKind.StateEvent &&
      e.kind !== WalRecordKind.SourceInsert
    ) {
      throw new Error(`shard ${shardId}: unknown WAL record kind ${e.kind} at lsn ${e.lsn}`);
    }
    prev = e.lsn;
  }
  return prev;
}

/** Puts one checked entry into the shard's databases. */
export function applyEntry(dbs: ShardDbs, shardId: number, e: ApplyEntry): void {
  if (e.kind === WalRecordKind.AssertionInsert) {
    insertAssertion(dbs, shardId, e);
  } else if (e.kind === WalRecordKind.StateEvent) {
    const ev = e.event ?? decodeStateEvent(e.payload);
    if (ev.k === "vote") {
      dbs.votes.put([ev.target, e.lsn], { a: ev.actor, d: ev.dir, w: ev.weight, at: ev.at });
      dbs.voteNow.put([ev.target, ev.actor], { d: ev.dir, w: ev.weight, l: e.lsn, at: ev.at });
    } else {
      const value: StatusLogValue = { k: ev.k, a: ev.actor, r: ev.reason, at: ev.at };
      if (ev.by !== undefined) value.o = ev.by;
      dbs.statusLog.put([ev.target, e.lsn], value);
      // Any decision on a quarantined assertion takes it out of the pending list.
      dbs.held.remove(ev.target_lsn);
      const concept = e.targetConcept ?? conceptAt(dbs, ev.target_lsn);
      if (concept !== null) {
        const key: IndexKey = [concept, ev.target_lsn];
        if (ev.k === "approve") dbs.active.put(key, EMPTY_INDEX_VALUE);
        else dbs.active.remove(key);
      }
    }
  } else {
    const src = e.source ?? decodeSourceRecord(e.payload);
    // Content-addressed: a second insert of the same id is the same source; keep the first.
    if (!dbs.sources.doesExist(src.id)) dbs.sources.put(src.id, src);
  }
}

/** Indexes one assertion; a `supersedes` link also logs the old one's change of status. */
function indexAssertion(dbs: ShardDbs, e: ApplyEntry, d: AssertionFacts): void {
  dbs.records.put(e.lsn, e.payload as Buffer);
  dbs.ids.put(idKeyOfChecked(d.id), e.lsn);
  dbs.byConcept.put([d.concept, e.lsn], EMPTY_INDEX_VALUE);
  dbs.byAgent.put([d.agent, e.lsn], EMPTY_INDEX_VALUE);
  // LSNs only grow, so a new active assertion is always the newest active insert.
  if (d.active) {
    dbs.latest.put(d.concept, e.lsn);
    dbs.active.put([d.concept, e.lsn], EMPTY_INDEX_VALUE);
  } else {
    dbs.conceptsHeld.put(d.concept, 1);
    dbs.held.put(e.lsn, d.id);
  }
  if (d.supersedes !== null) {
    const at = Number(assertionView(e.payload).recordedAtMs());
    dbs.statusLog.put([d.supersedes, e.lsn], { k: "supersede", a: d.agent, o: d.id, at });
    // The writer checked that both are about one concept.
    const oldLsn = d.supersedesLsn ?? lsnOfId(dbs.ids, d.supersedes);
    if (oldLsn !== undefined) dbs.active.remove([d.concept, oldLsn]);
  }
}

/**
 * Concept of the record at `lsn`, read from LMDB for an entry that came without it (see
 * targetConcept); null when there is no such record.
 */
function conceptAt(dbs: ShardDbs, lsn: number): string | null {
  const buf = dbs.records.getBinaryFast(lsn);
  return buf === undefined ? null : scratchAssertionView(buf).concept();
}

/** Runs inside the apply's write transaction or batch; throwing aborts the whole batch. */
function insertAssertion(dbs: ShardDbs, shardId: number, e: ApplyEntry): void {
  if (e.decoded !== undefined) {
    indexAssertion(dbs, e, e.decoded);
    return;
  }
  const v = scratchAssertionView(e.payload);
  const id = v.id();
  const concept = v.concept();
  const agent = v.agent();
  if (id === null || !ROUTABLE_ID_PATTERN.test(id)) {
    throw new CorruptRecordError(`lsn ${e.lsn}: assertion id missing or not 32 hex chars`);
  }
  if (concept === null || concept.length === 0 || agent === null || agent.length === 0) {
    throw new CorruptRecordError(`lsn ${e.lsn}: assertion ${id} lacks concept or agent`);
  }
  // The record carries its own lsn (patched in by the WAL writer); the indexes use the
  // entry's. They must agree or history cursors and record.lsn would disagree.
  if (v.lsn() !== BigInt(e.lsn)) {
    throw new CorruptRecordError(`lsn ${e.lsn}: payload of ${id} says lsn ${v.lsn()}`);
  }
  if (v.shard() !== shardId) {
    throw new CorruptRecordError(`lsn ${e.lsn}: ${id} is for shard ${v.shard()}`);
  }
  const status = statusFromFb(v.status());
  const storedLsn = dbs.ids.get(idKeyOfChecked(id));
  // Same id at another LSN: a true duplicate, never indexed twice. Same LSN: a replay after
  // a crash between commits, so the (idempotent) index puts are repeated.
  if (storedLsn !== undefined && storedLsn !== e.lsn) return;
  indexAssertion(dbs, e, {
    id,
    concept,
    agent,
    active: status === "active",
    supersedes: v.supersedes(),
  });
}
