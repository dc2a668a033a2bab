// Small reads (the `latest` lens, short history pages, an assertion by id) answered on the
// main thread from its own read transaction on the shard's LMDB env when that env holds
// every write touching the concept (read_visibility.ts); otherwise, and for every heavier
// read, the shard answers. Both paths compute the answer with the same functions
// (shard/lens_answers.ts, state_reads.ts).
//
// Why: a read through the shard costs two thread hops (postMessage, a wake-up on each side)
// and keeps both threads busy on a 2-vCPU machine; a point lookup itself is a few µs. The
// answer is the same either way: the shard's reads are LMDB plus its in-memory overlay of
// durable, uncommitted records, and the fast path runs only when that overlay adds nothing.
import type { RootDatabase } from "lmdb";
import type { SnapshotRead } from "../metrics/snapshot_read_metrics.js";
import { answerLens, type LensQuery, SCAN_BOUND_REACHED } from "../shard/lens_answers.js";
import { bucketOfConcept, bucketOfId, type ReadVisibility } from "../shard/read_visibility.js";
import { renderAssertion } from "../shard/render.js";
import { InvalidCursorError } from "../store/cursor.js";
import { openShardDbs, type StateDbs, stateDbsOf } from "../store/shard_dbs.js";
import { DEFAULT_MAP_SIZE_BYTES, openShardRoot } from "../store/shard_store.js";
import { LIVE_LSN, recordAsOf } from "../store/state_reads.js";
import { type ShardPool, ShardRequestError } from "./shard_pool.js";

/** Most items a history page may ask for and still be read on the main thread. */
export const MAX_SNAPSHOT_HISTORY_ITEMS = 100;

/**
 * Whether a lens read is small enough for the main thread, whose event loop serves every
 * client: one concept's newest assertion or a short history page (a few B-tree lookups per
 * item). Consensus (up to 100 assertions with their votes) and subtree reads can take
 * milliseconds: they stay on the shard threads, which also run a subtree's parts in parallel.
 */
function isSmallRead(
  msg: LensQuery,
): msg is Extract<LensQuery, { t: "lens_latest" | "lens_history" }> {
  if (msg.t === "lens_latest") return true;
  return msg.t === "lens_history" && msg.limit <= MAX_SNAPSHOT_HISTORY_ITEMS;
}

/**
 * Most index entries a `latest` read looks at on the main thread. A live read walks the
 * `active` index and needs one; a read as of an epoch walks by_concept, where a concept whose
 * newest entries were superseded, retracted or held can need the shard's longer scan
 * (MAX_LENS_SCAN_ASSERTIONS), which then runs on the shard thread instead.
 */
export const MAX_SNAPSHOT_LATEST_SCAN = 64;

/** Records one read answered here: shard, kind, seconds (metrics/snapshot_read_metrics.ts). */
type ReadObserver = (shardId: number, read: SnapshotRead, seconds: number) => void;

interface ShardSnapshot {
  readonly root: RootDatabase;
  readonly dbs: StateDbs;
  readonly visibility: ReadVisibility;
  /** Committed LSN seen when this thread's read transaction was last reset. */
  seenCommittedLsn: number;
  /** Reads answered here (reported by /v1/health). */
  served: number;
}

export class ShardReads {
  private closed = false;

  private constructor(
    private readonly pool: ShardPool,
    private readonly snapshots: ShardSnapshot[],
    private readonly observe: ReadObserver,
    /** false (STEMEDB_SNAPSHOT_READS=false): every read goes to the shard. */
    private readonly enabled: boolean,
  ) {}

  /** Opens each shard's env (after the shards opened it: they created and checked it). */
  static open(
    pool: ShardPool,
    dbDirOf: (shardId: number) => string,
    observe: ReadObserver,
    enabled: boolean,
  ): ShardReads {
    const snapshots: ShardSnapshot[] = [];
    try {
      // Disabled: no env opened here; every read goes to the shards.
      for (let id = 0; enabled && id < pool.shardCount; id++) {
        const root = openShardRoot(dbDirOf(id), DEFAULT_MAP_SIZE_BYTES);
        snapshots.push({
          root,
          dbs: stateDbsOf(openShardDbs(root)),
          visibility: pool.visibility(id),
          seenCommittedLsn: -1,
          served: 0,
        });
      }
    } catch (err) {
      for (const s of snapshots) void s.root.close();
      throw err;
    }
    return new ShardReads(pool, snapshots, observe, enabled);
  }

  /**
   * The shard's databases when this thread may read a concept of `bucket` directly, else
   * null. A read transaction begun before the last commit this thread saw is dropped first
   * (lmdb-js keeps one per thread until the end of the turn), so the read sees that commit.
   */
  private current(shardId: number, bucket: number): ShardSnapshot | null {
    if (this.closed || !this.enabled || this.pool.exited(shardId)) return null;
    const s = this.snapshots[shardId];
    if (s === undefined) throw new RangeError(`no shard ${shardId}`);
    const committed = s.visibility.committedIfCurrent(bucket);
    if (committed < 0) return null;
    if (committed !== s.seenCommittedLsn) {
      s.root.resetReadTxn();
      s.seenCommittedLsn = committed;
    }
    return s;
  }

  /**
   * A lens request's answer (the shape the shard gives for `msg`, see protocol.ts). Errors
   * are the shard path's: a bad cursor is a ShardRequestError "invalid_cursor".
   */
  async lens<T>(shardId: number, msg: LensQuery): Promise<T> {
    if (!isSmallRead(msg)) return this.pool.request<T>(shardId, msg);
    const s = this.current(shardId, bucketOfConcept(msg.concept));
    if (s === null) return this.pool.request<T>(shardId, msg);
    const startedMs = performance.now();
    let answer: unknown;
    try {
      answer = answerLens(s.dbs, msg, msg.asOfLsn ?? LIVE_LSN, MAX_SNAPSHOT_LATEST_SCAN);
    } catch (err) {
      if (err instanceof InvalidCursorError)
        throw new ShardRequestError(shardId, "invalid_cursor", err.message);
      throw err;
    }
    if (answer === SCAN_BOUND_REACHED) return this.pool.request<T>(shardId, msg);
    this.served(s, shardId, msg.t, startedMs);
    return answer as T;
  }

  /** The rendered assertion `id` with its live status, or null. */
  async get(shardId: number, id: string): Promise<string | null> {
    const s = this.current(shardId, bucketOfId(id));
    if (s === null) return this.pool.get(shardId, id);
    const startedMs = performance.now();
    const rec = recordAsOf(s.dbs, id, LIVE_LSN);
    const json = rec === undefined ? null : renderAssertion(rec);
    this.served(s, shardId, "get", startedMs);
    return json;
  }

  private served(s: ShardSnapshot, shardId: number, read: SnapshotRead, startedMs: number): void {
    s.served++;
    this.observe(shardId, read, (performance.now() - startedMs) / 1000);
  }

  /** Reads of this shard answered on the main thread so far. */
  servedCount(shardId: number): number {
    return this.snapshots[shardId]?.served ?? 0;
  }

  /** Closes this thread's handles (the shards keep the envs open until they stop). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled(this.snapshots.map((s) => s.root.close()));
  }
}
