// Per-shard materialized state: one LMDB environment per shard, owned by exactly one thread.
//
// The WAL is the source of truth; this store is the state the WAL has been applied up to
// (`appliedLsn`, written in the same LMDB transaction as the state it describes). Recovery
// replays WAL entries with lsn > appliedLsn. The env's databases are described in
// shard_dbs.ts, how an entry becomes state in apply.ts; this class sequences applies, serves
// the store's own reads and makes the env durable for checkpoints and backups.
//
// Durability: lmdb-js's default on Linux (overlappingSync). With it, a transactionSync
// commit is still flushed (fdatasync) before it returns — overlapping only applies to
// lmdb-js's async write batches — so every applyBatch is durable on return and a crash
// cannot leave appliedLsn ahead of (or behind) the state it describes.
import { type Database, open, type RootDatabase } from "lmdb";
import type * as fb from "../schema/generated/stemedb_generated.js";
import { type ApplyEntry, applyEntry, checkBatch } from "./apply.js";
import { type AssertionRecord, assertionView, scratchAssertionView } from "./assertion_codec.js";
import {
  checkLimit,
  decodeConceptCursor,
  decodeLsnCursor,
  encodeCursor,
  InvalidCursorError,
} from "./cursor.js";
import { type UpgradeReport, upgradeStoreFormat } from "./format_upgrade.js";
import { observeCommitCause } from "./lmdb_failure.js";
import {
  APPLY_CHAIN_KEY,
  checkShardOf,
  type IndexKey,
  idKeyCopy,
  idOfKey,
  initApplyChain,
  initMeta,
  lsnOfId,
  MAX_DBS,
  META_APPLIED_LSN,
  openShardDbs,
  type ShardDbs,
  type StateDbs,
  stateDbsOf,
} from "./shard_dbs.js";
import { LIVE_LSN, latestAsOf, latestUnderAsOf, mustReadAt, readRecord } from "./state_reads.js";

export {
  type ApplyEntry,
  type AssertionFacts,
  MAX_APPLY_BATCH_ENTRIES,
  WalRecordKind,
} from "./apply.js";
export {
  type IndexKey,
  STORE_FORMAT_VERSION,
  type StateDbs,
  type StatusLogValue,
  type VoteValue,
} from "./shard_dbs.js";
export { InvalidCursorError };

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

/**
 * A shard's LMDB env with the options every opener uses: the shard thread, and the main
 * thread's snapshot reads (lmdb-js shares one env per path within the process).
 */
export function openShardRoot(dir: string, mapSizeBytes: number): RootDatabase {
  return open({
    path: dir,
    noSubdir: false, // a directory even if its name contains a dot
    maxDbs: MAX_DBS,
    mapSize: mapSizeBytes,
    compression: false,
    encoding: "binary",
    // overlappingSync and every other sync flag: lmdb-js defaults (see file header).
  });
}
// Index key lower bound: every applied lsn is >= 1 (it must exceed appliedLsn >= 0).
const LSN_FLOOR = -1;

interface LmdbStats {
  entryCount: number;
  mapSize: number;
}

export class ShardStore {
  readonly shardId: number;
  private readonly root: RootDatabase;
  /** Every database of the env (apply writes them all). */
  private readonly all: ShardDbs;
  /** For the lens reads in state_reads.ts. */
  readonly dbs: StateDbs;
  /** Highest LSN handed to LMDB (its commit may still be running). */
  private applied: number;
  /** Highest LSN whose LMDB commit finished: what reads of the env see. */
  private committed: number;
  private closed = false;
  /** What this open upgraded (format 2 -> 3), or null. */
  readonly formatUpgrade: UpgradeReport | null;
  private lastWrite: Promise<void> = Promise.resolve();
  /** The first failed async apply: later applies, checkpoints and backups are refused. */
  private applyFailure: Error | null = null;

  private constructor(root: RootDatabase, shardId: number) {
    this.root = root;
    this.shardId = shardId;
    this.all = openShardDbs(root);
    this.dbs = stateDbsOf(this.all);
    checkShardOf(this.all.meta, shardId);
    this.formatUpgrade = upgradeStoreFormat(root, this.all);
    this.applied = initMeta(root, this.all.meta, shardId);
    this.committed = this.applied;
    initApplyChain(root, this.all.applyChain, this.applied);
  }

  static open(opts: ShardStoreOpenOptions): ShardStore {
    const mapSize = opts.mapSizeBytes ?? DEFAULT_MAP_SIZE_BYTES;
    if (!Number.isInteger(opts.shardId) || opts.shardId < 0 || opts.shardId > 0xffff) {
      throw new RangeError(`shardId must be a uint16, got ${opts.shardId}`);
    }
    if (!Number.isSafeInteger(mapSize) || mapSize < 1024 * 1024) {
      throw new RangeError(`mapSizeBytes must be an integer >= 1 MiB, got ${mapSize}`);
    }
    const root = openShardRoot(opts.dir, mapSize);
    try {
      return new ShardStore(root, opts.shardId);
    } catch (err) {
      void root.close();
      throw err;
    }
  }

  /** Highest LSN handed to LMDB; the next apply must start above it. */
  get appliedLsn(): number {
    return this.applied;
  }

  /** Highest LSN LMDB has committed (appliedLsn once every issued apply finished). */
  get committedLsn(): number {
    return this.committed;
  }

  private checkOpen(): void {
    if (this.closed) throw new Error(`shard ${this.shardId} store is closed`);
  }

  has(id: string): boolean {
    this.checkOpen();
    return lsnOfId(this.all.ids, id) !== undefined;
  }

  /** One synchronous transaction, durable when it returns (tests, tools). */
  applyBatch(entries: ReadonlyArray<ApplyEntry>): void {
    this.checkOpen();
    if (entries.length === 0) return;
    const last = checkBatch(entries, this.applied, this.shardId);
    const dbs = this.all;
    const shardId = this.shardId;
    this.root.transactionSync(() => {
      for (const e of entries) applyEntry(dbs, shardId, e);
      dbs.meta.put(META_APPLIED_LSN, last);
      dbs.applyChain.put(APPLY_CHAIN_KEY, 0, last);
    });
    this.applied = last;
    this.committed = last;
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
    if (this.applyFailure !== null) throw this.applyFailure;
    if (entries.length === 0) return this.lastWrite;
    const previous = this.applied;
    const last = checkBatch(entries, previous, this.shardId);
    const dbs = this.all;
    const shardId = this.shardId;
    // All or nothing, and only on top of the batch before it: if that one's commit failed,
    // this one is skipped (resolves false) rather than committed past a gap.
    const written = dbs.applyChain.ifVersion(APPLY_CHAIN_KEY, previous, () => {
      for (const e of entries) applyEntry(dbs, shardId, e);
      dbs.meta.put(META_APPLIED_LSN, last);
      dbs.applyChain.put(APPLY_CHAIN_KEY, 0, last);
    });
    this.applied = last;
    this.lastWrite = written.then(
      (ok) => {
        if (ok) this.committed = last;
        else
          this.failApply(
            new Error(
              `shard ${shardId}: LMDB apply after LSN ${previous} skipped: an earlier commit failed`,
            ),
          );
      },
      (err: unknown) => this.failApply(err as Error),
    );
    // Callers see the failure through the returned promise or settled(); mark it handled so a
    // failed commit never reaches the thread's unhandled-rejection handler (which ends a worker).
    this.lastWrite.catch(() => {});
    return this.lastWrite;
  }

  private failApply(err: Error): never {
    observeCommitCause(err);
    if (this.applyFailure === null) this.applyFailure = err;
    throw err;
  }

  getAssertion(id: string): AssertionRecord | undefined {
    this.checkOpen();
    return readRecord(this.dbs, id);
  }

  /** Concept of the assertion stored at `lsn`, undefined when none is. */
  conceptAt(lsn: number): string | undefined {
    this.checkOpen();
    const buf = this.all.records.getBinaryFast(lsn);
    return buf === undefined ? undefined : (scratchAssertionView(buf).concept() ?? undefined);
  }

  /** LSN of a stored assertion (the duplicate check of every write: no closure, no copy). */
  assertionLsn(id: string): number | undefined {
    this.checkOpen();
    return lsnOfId(this.all.ids, id);
  }

  /** Up to `limit` record ids in key order after `after` (exclusive; null = from the start). */
  idsAfter(after: string | null, limit: number): string[] {
    this.checkOpen();
    const ids: string[] = [];
    const range = this.all.ids.getKeys(
      after === null ? { limit } : { start: idKeyCopy(after), exclusiveStart: true, limit },
    );
    for (const key of range) ids.push(idOfKey(key));
    return ids;
  }

  withAssertion<T>(id: string, fn: (view: fb.Assertion) => T): T | undefined {
    this.checkOpen();
    // getBinaryFast hands back lmdb-js's reusable buffer (or a view of the map for large
    // values): valid until the next read on this env, which is why the view must not
    // escape fn and fn must not read from this store.
    const lsn = lsnOfId(this.all.ids, id);
    const buf = lsn === undefined ? undefined : this.all.records.getBinaryFast(lsn);
    return buf === undefined ? undefined : fn(assertionView(buf));
  }

  /** Newest assertion of the concept that is active now. */
  latest(concept: string): AssertionRecord | undefined {
    this.checkOpen();
    return latestAsOf(this.dbs, concept, LIVE_LSN);
  }

  history(concept: string, opts: { limit: number; cursor?: string | null }): Page<AssertionRecord> {
    return this.lsnPage(this.all.byConcept, "h1", concept, opts);
  }

  byAgent(agent: string, opts: { limit: number; cursor?: string | null }): Page<AssertionRecord> {
    return this.lsnPage(this.all.byAgent, "a1", agent, opts);
  }

  /** Newest first over an [scope, lsn] index. */
  private lsnPage(
    index: Database<Buffer, IndexKey>,
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
    const hits: number[] = [];
    for (const key of index.getKeys({
      start: [scope, startLsn],
      exclusiveStart: hasCursor,
      end: [scope, LSN_FLOOR],
      reverse: true,
      limit: opts.limit + 1,
    })) {
      // ordered-binary keeps [scope, *] contiguous; the check guards odd scope strings.
      if (key[0] !== scope) continue;
      hits.push(key[1]);
    }
    const more = hits.length > opts.limit;
    if (more) hits.length = opts.limit;
    const items = hits.map((lsn) => mustReadAt(this.dbs, lsn, `${kind}[${scope}, ${lsn}]`));
    const lastLsn = hits[hits.length - 1];
    return {
      items,
      nextCursor: more && lastLsn !== undefined ? encodeCursor(kind, scope, lastLsn) : null,
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
    for (const key of this.all.latest.getKeys({ ...range, limit: maxKeys })) {
      visit(key);
      last = key;
      seen++;
    }
    return seen < maxKeys ? null : last;
  }

  stats(): ShardStoreStats {
    this.checkOpen();
    const rootStats = this.root.getStats() as LmdbStats;
    return {
      records: (this.all.ids.getStats() as LmdbStats).entryCount,
      concepts: (this.all.latest.getStats() as LmdbStats).entryCount,
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
    if (this.applyFailure !== null) throw this.applyFailure;
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
    if (this.applyFailure !== null) throw this.applyFailure;
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
    // A failed apply was reported to the writer already; closing must still release the env.
    await this.lastWrite.catch(() => {});
    this.closed = true;
    await this.root.close();
  }
}
