// Per-shard materialized state: one LMDB environment per shard, owned by exactly one thread.
//
// The WAL is the source of truth; this store is the state the WAL has been applied up to
// (`appliedLsn`, written in the same LMDB transaction as the state it describes). Recovery
// replays WAL entries with lsn > appliedLsn.
//
// Named databases inside the environment:
//   records     id -> Assertion FlatBuffer bytes, exactly as received (no re-encode)
//   by_concept  [concept, lsn] -> id          (time order per concept)
//   by_agent    [agent, lsn] -> id            (time order per agent)
//   latest      concept -> id of the newest assertion inserted ACTIVE (a hint: its status
//               may have changed since; lenses check, see state_reads.ts)
//   concepts_held  concept -> 1 for concepts whose assertions arrived quarantined (so subtree
//               scans find concepts that have no active insert)
//   status_log  [id, lsn] -> {k, a, o?, r?, at}  supersede/retract/approve/reject of id
//   votes       [id, lsn] -> {a, d, w, at}       every vote on id (newest per voter counts)
//   sources     id -> SourceRecord
//   held        lsn -> id of assertions waiting in quarantine (removed by any decision)
//   meta        "applied_lsn" | "format_version" | "shard_id" -> number
//
// The status of an assertion as of LSN L is its insert status folded with its status_log
// entries up to L; that one rule serves live reads (L = infinity) and as_of_epoch reads.
//
// Durability: lmdb-js's default on Linux (overlappingSync). With it, a transactionSync
// commit is still flushed (fdatasync) before it returns — overlapping only applies to
// lmdb-js's async write batches — so every applyBatch is durable on return and a crash
// cannot leave appliedLsn ahead of (or behind) the state it describes.
import assert from "node:assert/strict";
import { type Database, open, type RootDatabase } from "lmdb";
import {
  decodeSourceRecord,
  decodeStateEvent,
  type SourceRecord,
  type StateEvent,
} from "../domain/state_events.js";
import type * as fb from "../schema/generated/stemedb_generated.js";
import {
  type AssertionRecord,
  assertionView,
  CorruptRecordError,
  recordFromView,
  statusFromFb,
} from "./assertion_codec.js";
import {
  checkLimit,
  decodeConceptCursor,
  decodeLsnCursor,
  encodeCursor,
  InvalidCursorError,
} from "./cursor.js";
import { LIVE_LSN, latestAsOf, latestUnderAsOf } from "./state_reads.js";

export { InvalidCursorError };

export const WalRecordKind = { AssertionInsert: 1, StateEvent: 2, SourceInsert: 3 } as const;

/** What the store needs of an assertion to index it (decoded once by the writer). */
export interface AssertionFacts {
  id: string;
  concept: string;
  agent: string;
  active: boolean;
  supersedes: string | null;
}

export interface StatusLogValue {
  k: "supersede" | "retract" | "approve" | "reject";
  a: string;
  /** supersede: the id of the new assertion. */
  o?: string;
  r?: string | null;
  at: number;
}

export interface VoteValue {
  a: string;
  d: 1 | -1;
  w: number;
  at: number;
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
  /** SourceInsert entries: the decoded source. */
  source?: SourceRecord;
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

export interface ShardStoreStats {
  records: number;
  concepts: number;
  appliedLsn: number;
  mapSizeBytes: number;
}

export interface ShardStoreOpenOptions {
  dir: string;
  shardId: number;
  /** Initial map size; lmdb-js grows the map on demand when it fills up. */
  mapSizeBytes?: number;
}

export const DEFAULT_MAP_SIZE_BYTES = 1024 * 1024 * 1024; // 1 GiB
export const STORE_FORMAT_VERSION = 1;
// Six dbs today; room for votes, supersession links, sources... without reopening.
const MAX_DBS = 32;
// Bounds one LMDB write transaction (and how long it holds the shard thread).
export const MAX_APPLY_BATCH_ENTRIES = 10_000;
const ID_RE = /^[0-9a-f]{32}$/;
// Index key lower bound: every applied lsn is >= 1 (it must exceed appliedLsn >= 0).
const LSN_FLOOR = -1;

const META_APPLIED_LSN = "applied_lsn";
const META_FORMAT_VERSION = "format_version";
const META_SHARD_ID = "shard_id";

export type IndexKey = [string, number];

/** The databases state_reads.ts reads (one env, one owning thread). */
export interface StateDbs {
  records: Database<Buffer, string>;
  byConcept: Database<string, IndexKey>;
  latest: Database<string, string>;
  conceptsHeld: Database<number, string>;
  statusLog: Database<StatusLogValue, IndexKey>;
  votes: Database<VoteValue, IndexKey>;
  sources: Database<SourceRecord, string>;
  /** lsn -> id of assertions quarantined and not yet decided (the admin's pending list). */
  held: Database<string, number>;
}

interface LmdbStats {
  entryCount: number;
  mapSize: number;
}

export class ShardStore {
  readonly shardId: number;
  private readonly root: RootDatabase;
  private readonly records: Database<Buffer, string>;
  private readonly byConcept: Database<string, IndexKey>;
  private readonly byAgentDb: Database<string, IndexKey>;
  private readonly latestDb: Database<string, string>;
  private readonly meta: Database<number, string>;
  private readonly conceptsHeld: Database<number, string>;
  private readonly statusLog: Database<StatusLogValue, IndexKey>;
  private readonly votesDb: Database<VoteValue, IndexKey>;
  private readonly sourcesDb: Database<SourceRecord, string>;
  private readonly heldDb: Database<string, number>;
  /** For the lens reads in state_reads.ts. */
  readonly dbs: StateDbs;
  private applied: number;
  private closed = false;
  private lastWrite: Promise<void> = Promise.resolve();

  private constructor(root: RootDatabase, shardId: number) {
    this.root = root;
    this.shardId = shardId;
    const opt = { compression: false, cache: false } as const;
    this.records = root.openDB<Buffer, string>({ name: "records", encoding: "binary", ...opt });
    this.byConcept = root.openDB<string, IndexKey>({
      name: "by_concept",
      encoding: "string",
      ...opt,
    });
    this.byAgentDb = root.openDB<string, IndexKey>({
      name: "by_agent",
      encoding: "string",
      ...opt,
    });
    this.latestDb = root.openDB<string, string>({ name: "latest", encoding: "string", ...opt });
    this.meta = root.openDB<number, string>({ name: "meta", encoding: "ordered-binary", ...opt });
    this.conceptsHeld = root.openDB<number, string>({
      name: "concepts_held",
      encoding: "ordered-binary",
      ...opt,
    });
    this.statusLog = root.openDB<StatusLogValue, IndexKey>({
      name: "status_log",
      encoding: "msgpack",
      ...opt,
    });
    this.votesDb = root.openDB<VoteValue, IndexKey>({ name: "votes", encoding: "msgpack", ...opt });
    this.sourcesDb = root.openDB<SourceRecord, string>({
      name: "sources",
      encoding: "msgpack",
      ...opt,
    });
    this.heldDb = root.openDB<string, number>({ name: "held", encoding: "string", ...opt });
    this.dbs = {
      records: this.records,
      byConcept: this.byConcept,
      latest: this.latestDb,
      conceptsHeld: this.conceptsHeld,
      statusLog: this.statusLog,
      votes: this.votesDb,
      sources: this.sourcesDb,
      held: this.heldDb,
    };
    this.applied = this.initMeta();
  }

  static open(opts: ShardStoreOpenOptions): ShardStore {
    const mapSize = opts.mapSizeBytes ?? DEFAULT_MAP_SIZE_BYTES;
    if (!Number.isInteger(opts.shardId) || opts.shardId < 0 || opts.shardId > 0xffff) {
      throw new RangeError(`shardId must be a uint16, got ${opts.shardId}`);
    }
    if (!Number.isSafeInteger(mapSize) || mapSize < 1024 * 1024) {
      throw new RangeError(`mapSizeBytes must be an integer >= 1 MiB, got ${mapSize}`);
    }
    const root = open({
      path: opts.dir,
      noSubdir: false, // a directory even if its name contains a dot
      maxDbs: MAX_DBS,
      mapSize,
      compression: false,
      encoding: "binary",
      // overlappingSync and every other sync flag: lmdb-js defaults (see file header).
    });
    try {
      return new ShardStore(root, opts.shardId);
    } catch (err) {
      void root.close();
      throw err;
    }
  }

  private initMeta(): number {
    const storedShard = this.meta.get(META_SHARD_ID);
    const storedVersion = this.meta.get(META_FORMAT_VERSION);
    if (storedShard === undefined) {
      this.root.transactionSync(() => {
        this.meta.put(META_SHARD_ID, this.shardId);
        this.meta.put(META_FORMAT_VERSION, STORE_FORMAT_VERSION);
        this.meta.put(META_APPLIED_LSN, 0);
      });
      return 0;
    }
    if (storedShard !== this.shardId) {
      throw new Error(`LMDB env belongs to shard ${storedShard}, opened as shard ${this.shardId}`);
    }
    if (storedVersion !== STORE_FORMAT_VERSION) {
      throw new Error(
        `shard ${this.shardId}: store format ${String(storedVersion)} unsupported (want ${STORE_FORMAT_VERSION})`,
      );
    }
    const lsn = this.meta.get(META_APPLIED_LSN);
    assert.ok(typeof lsn === "number" && Number.isSafeInteger(lsn) && lsn >= 0, "bad applied_lsn");
    return lsn;
  }

  get appliedLsn(): number {
    return this.applied;
  }

  private checkOpen(): void {
    if (this.closed) throw new Error(`shard ${this.shardId} store is closed`);
  }

  has(id: string): boolean {
    this.checkOpen();
    return this.records.doesExist(id);
  }

  /** Checks bounds and LSN order; returns the last LSN. */
  private checkBatch(entries: ReadonlyArray<ApplyEntry>): number {
    if (entries.length > MAX_APPLY_BATCH_ENTRIES) {
      throw new RangeError(`batch of ${entries.length} entries exceeds ${MAX_APPLY_BATCH_ENTRIES}`);
    }
    let prev = this.applied;
    for (const e of entries) {
      if (!Number.isSafeInteger(e.lsn) || e.lsn <= prev) {
        throw new RangeError(
          `shard ${this.shardId}: lsn ${e.lsn} is not greater than ${prev} (applied ${this.applied})`,
        );
      }
      if (
        e.kind !== WalRecordKind.AssertionInsert &&
        e.kind !== WalRecordKind.StateEvent &&
        e.kind !== WalRecordKind.SourceInsert
      ) {
        throw new Error(`shard ${this.shardId}: unknown WAL record kind ${e.kind} at lsn ${e.lsn}`);
      }
      prev = e.lsn;
    }
    return prev;
  }

  /** One synchronous transaction, durable when it returns (used for WAL replay at open). */
  applyBatch(entries: ReadonlyArray<ApplyEntry>): void {
    this.checkOpen();
    if (entries.length === 0) return;
    const last = this.checkBatch(entries);
    this.root.transactionSync(() => {
      for (const e of entries) this.applyEntry(e);
      this.meta.put(META_APPLIED_LSN, last);
    });
    this.applied = last;
  }

  /**
   * The hot-path apply: lmdb-js queues the puts and commits them on its write thread (with
   * overlappingSync, crash-safe), so the shard thread never waits for LMDB's fsync. The
   * puts are committed in order; the promise resolves once they are. Until then reads of
   * these entries must be served by the caller (ShardCore keeps them in memory). Replay
   * after a crash re-puts indexes idempotently, so a commit boundary inside a batch is safe.
   */
  applyBatchAsync(entries: ReadonlyArray<ApplyEntry>): Promise<void> {
    this.checkOpen();
    if (entries.length === 0) return this.lastWrite;
    const last = this.checkBatch(entries);
    for (const e of entries) this.applyEntry(e);
    this.lastWrite = this.meta.put(META_APPLIED_LSN, last).then(() => undefined);
    this.applied = last;
    return this.lastWrite;
  }

  private applyEntry(e: ApplyEntry): void {
    if (e.kind === WalRecordKind.AssertionInsert) {
      this.insertAssertion(e);
    } else if (e.kind === WalRecordKind.StateEvent) {
      const ev = e.event ?? decodeStateEvent(e.payload);
      if (ev.k === "vote") {
        this.votesDb.put([ev.target, e.lsn], { a: ev.actor, d: ev.dir, w: ev.weight, at: ev.at });
      } else {
        const value: StatusLogValue = { k: ev.k, a: ev.actor, r: ev.reason, at: ev.at };
        if (ev.by !== undefined) value.o = ev.by;
        this.statusLog.put([ev.target, e.lsn], value);
        // Any decision on a quarantined assertion takes it out of the pending list.
        this.heldDb.remove(ev.target_lsn);
      }
    } else {
      const src = e.source ?? decodeSourceRecord(e.payload);
      // Content-addressed: a second insert of the same id is the same source; keep the first.
      if (!this.sourcesDb.doesExist(src.id)) this.sourcesDb.put(src.id, src);
    }
  }

  /** Indexes one assertion; a `supersedes` link also logs the old one's change of status. */
  private indexAssertion(e: ApplyEntry, d: AssertionFacts): void {
    this.records.put(d.id, e.payload as Buffer);
    this.byConcept.put([d.concept, e.lsn], d.id);
    this.byAgentDb.put([d.agent, e.lsn], d.id);
    // LSNs only grow, so a new active assertion is always the newest active insert.
    if (d.active) this.latestDb.put(d.concept, d.id);
    else {
      this.conceptsHeld.put(d.concept, 1);
      this.heldDb.put(e.lsn, d.id);
    }
    if (d.supersedes !== null) {
      const at = Number(assertionView(e.payload).recordedAtMs());
      this.statusLog.put([d.supersedes, e.lsn], { k: "supersede", a: d.agent, o: d.id, at });
    }
  }

  /** Runs inside the applyBatch write transaction; throwing aborts the whole batch. */
  private insertAssertion(e: ApplyEntry): void {
    if (e.decoded !== undefined) {
      this.indexAssertion(e, e.decoded);
      return;
    }
    const v = assertionView(e.payload);
    const id = v.id();
    const concept = v.concept();
    const agent = v.agent();
    if (id === null || !ID_RE.test(id)) {
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
    if (v.shard() !== this.shardId) {
      throw new CorruptRecordError(`lsn ${e.lsn}: ${id} is for shard ${v.shard()}`);
    }
    const status = statusFromFb(v.status());
    const stored = this.records.getBinaryFast(id);
    // Same id at another LSN: a true duplicate, never indexed twice. Same LSN: a replay after
    // a crash between commits, so the (idempotent) index puts are repeated.
    if (stored !== undefined && Number(assertionView(stored).lsn()) !== e.lsn) return;
    this.indexAssertion(e, {
      id,
      concept,
      agent,
      active: status === "active",
      supersedes: v.supersedes(),
    });
  }

  getAssertion(id: string): AssertionRecord | undefined {
    this.checkOpen();
    const buf = this.records.getBinaryFast(id);
    return buf === undefined ? undefined : recordFromView(assertionView(buf));
  }

  withAssertion<T>(id: string, fn: (view: fb.Assertion) => T): T | undefined {
    this.checkOpen();
    // getBinaryFast hands back lmdb-js's reusable buffer (or a view of the map for large
    // values): valid until the next read on this env, which is why the view must not
    // escape fn and fn must not read from this store.
    const buf = this.records.getBinaryFast(id);
    return buf === undefined ? undefined : fn(assertionView(buf));
  }

  /** Newest assertion of the concept that is active now. */
  latest(concept: string): AssertionRecord | undefined {
    this.checkOpen();
    return latestAsOf(this.dbs, concept, LIVE_LSN);
  }

  history(concept: string, opts: { limit: number; cursor?: string | null }): Page<AssertionRecord> {
    return this.lsnPage(this.byConcept, "h1", concept, opts);
  }

  byAgent(agent: string, opts: { limit: number; cursor?: string | null }): Page<AssertionRecord> {
    return this.lsnPage(this.byAgentDb, "a1", agent, opts);
  }

  /** Newest first over an [scope, lsn] -> id index. */
  private lsnPage(
    index: Database<string, IndexKey>,
    kind: "h1" | "a1",
    scope: string,
    opts: { limit: number; cursor?: string | null },
  ): Page<AssertionRecord> {
    this.checkOpen();
    checkLimit(opts.limit);
    const hasCursor = opts.cursor !== undefined && opts.cursor !== null;
    const startLsn = hasCursor
      ? decodeLsnCursor(opts.cursor as string, kind, scope)
      : Number.MAX_SAFE_INTEGER;
    const hits: Array<{ id: string; lsn: number }> = [];
    for (const { key, value } of index.getRange({
      start: [scope, startLsn],
      exclusiveStart: hasCursor,
      end: [scope, LSN_FLOOR],
      reverse: true,
      limit: opts.limit + 1,
    })) {
      // ordered-binary keeps [scope, *] contiguous; the check guards odd scope strings.
      if (key[0] !== scope) continue;
      hits.push({ id: value, lsn: key[1] });
    }
    const more = hits.length > opts.limit;
    if (more) hits.length = opts.limit;
    const items = hits.map((h) => this.mustGet(h.id, `${kind}[${scope}, ${h.lsn}]`));
    const lastHit = hits[hits.length - 1];
    return {
      items,
      nextCursor: more && lastHit !== undefined ? encodeCursor(kind, scope, lastHit.lsn) : null,
    };
  }

  /**
   * Latest active assertion of every concept equal to prefix or under prefix + "/", ordered
   * by concept. An empty prefix means every concept in the shard.
   */
  latestUnder(
    prefix: string,
    opts: { limit: number; cursor?: string | null },
  ): Page<AssertionRecord> {
    checkLimit(opts.limit);
    const after =
      opts.cursor !== undefined && opts.cursor !== null
        ? decodeConceptCursor(opts.cursor, prefix)
        : null;
    const items = this.latestUnderAfter(prefix, after, opts.limit + 1);
    const more = items.length > opts.limit;
    if (more) items.length = opts.limit;
    const lastItem = items[items.length - 1];
    return {
      items,
      nextCursor:
        more && lastItem !== undefined ? encodeCursor("u1", prefix, lastItem.concept) : null,
    };
  }

  /**
   * Up to `want` latest assertions of concepts under `prefix` (see latestUnder), ordered by
   * concept, starting after the concept `after` (exclusive). Used to merge subtree answers
   * across shards with one cursor.
   */
  latestUnderAfter(prefix: string, after: string | null, want: number): AssertionRecord[] {
    this.checkOpen();
    return latestUnderAsOf(this.dbs, prefix, after, want, LIVE_LSN).items;
  }

  // [concepts] suggest scan (src/shard/concept_scan.ts); keys only, no record reads.
  /**
   * Calls `visit` with up to `maxKeys` concept paths that have a latest active assertion, in
   * key order, starting after `after` (exclusive; null = from the first). Returns the last
   * path visited, or null when the scan reached the end of the shard.
   */
  conceptKeys(
    after: string | null,
    maxKeys: number,
    visit: (concept: string) => void,
  ): string | null {
    this.checkOpen();
    const range = after === null ? {} : { start: after, exclusiveStart: true };
    let last: string | null = null;
    let seen = 0;
    for (const key of this.latestDb.getKeys({ ...range, limit: maxKeys })) {
      visit(key);
      last = key;
      seen++;
    }
    return seen < maxKeys ? null : last;
  }

  private mustGet(id: string, via: string): AssertionRecord {
    const rec = this.getAssertion(id);
    // Records are put before their index entries and lmdb-js commits in order, so a dangling
    // id is corruption.
    if (rec === undefined) throw new CorruptRecordError(`${via} -> ${id}: record missing`);
    return rec;
  }

  stats(): ShardStoreStats {
    this.checkOpen();
    const rootStats = this.root.getStats() as LmdbStats;
    return {
      records: (this.records.getStats() as LmdbStats).entryCount,
      concepts: (this.latestDb.getStats() as LmdbStats).entryCount,
      appliedLsn: this.applied,
      mapSizeBytes: rootStats.mapSize,
    };
  }

  async checkpoint(): Promise<number> {
    this.checkOpen();
    const lsn = this.applied;
    // Async applies commit in order; after the last one commits, `flushed` waits for
    // overlappingSync to make it durable. Only then may WAL behind `lsn` be recycled.
    await this.lastWrite;
    await this.root.flushed;
    return lsn;
  }

  /**
   * A consistent copy of the environment (one LMDB read snapshot) as `<dir>/data.mdb`;
   * `dir` must exist and be empty. Returns the applied LSN the snapshot holds.
   */
  async backupTo(dir: string): Promise<number> {
    this.checkOpen();
    await this.lastWrite;
    const lsn = this.applied;
    await this.root.backup(dir, false);
    return lsn;
  }

  /** Resolves once every async apply issued so far is committed (readable by ranges). */
  settled(): Promise<void> {
    return this.lastWrite;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.lastWrite;
    this.closed = true;
    await this.root.close();
  }
}
