// Main-thread side of the shard owners: one worker_threads Worker per shard (not piscina:
// see docs/architecture.md), started together, addressed by shard id, swept for requests
// that wait too long, and closed together (drain, checkpoint, stop). Per-shard messaging is
// in shard_handle.ts.
import path from "node:path";
import type { MetricObjectWithValues } from "../metrics/merge.js";
import type { StageTrace } from "../metrics/stage_trace.js";
import type { ShardSuggestResult } from "../shard/concept_scan.js";
import type {
  ShardBackupResult,
  ShardErrorBody,
  ShardInfo,
  WriteResult,
} from "../shard/protocol.js";
import type { ReadVisibility } from "../shard/read_visibility.js";
import { type QueryWithoutReq, ShardHandle } from "./shard_handle.js";

export { ShardRequestError } from "./shard_handle.js";

export interface ShardPoolOptions {
  shardCount: number;
  segmentSizeBytes: number;
  syncMode: "dsync" | "fdatasync";
  direct: boolean;
  repair: boolean;
  /** Root of the WAL archive (a subdirectory per shard), or null. */
  walArchiveRoot: string | null;
  /** Items (records) queued or in flight per shard before new writes get `backpressure`. */
  queueMaxItems: number;
  /** Passed to each shard's apply pipeline. */
  applyDelayMs: number;
  /** V8 young generation of each shard worker, MiB (resourceLimits.maxYoungGenerationSizeMb). */
  youngGenMb: number;
  walFlushMode: "pool" | "inline";
  /** Longest a request may wait for its shard before failing with `timeout`. */
  requestTimeoutMs: number;
  /** STEMEDB_STAGE_TRACE: the write stage stamps, or null (off). */
  stageTrace: StageTrace | null;
}

/** Longest wait for one shard to drain its writes and checkpoint at shutdown. */
const SHARD_CLOSE_TIMEOUT_MS = 60_000;

function withTimeout<T>(work: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  return Promise.race([work, expired]).finally(() => clearTimeout(timer));
}

export class ShardPool {
  private readonly shards: ShardHandle[];
  private readonly sweepTimer: NodeJS.Timeout;

  private constructor(
    shards: ShardHandle[],
    private readonly opts: ShardPoolOptions,
  ) {
    this.shards = shards;
    this.sweepTimer = setInterval(
      () => {
        const now = Date.now();
        for (const s of this.shards) s.expire(now, opts.requestTimeoutMs);
      },
      Math.max(50, Math.min(1000, opts.requestTimeoutMs / 4)),
    );
    this.sweepTimer.unref();
  }

  static async start(
    opts: ShardPoolOptions,
    dirsFor: (shardId: number) => { walDir: string; dbDir: string },
  ): Promise<ShardPool> {
    const shards: ShardHandle[] = [];
    for (let id = 0; id < opts.shardCount; id++) {
      shards.push(
        new ShardHandle(
          id,
          {
            shardId: id,
            ...dirsFor(id),
            segmentSizeBytes: opts.segmentSizeBytes,
            syncMode: opts.syncMode,
            direct: opts.direct,
            repair: opts.repair,
            applyDelayMs: opts.applyDelayMs,
            walFlushMode: opts.walFlushMode,
            walArchiveDir:
              opts.walArchiveRoot === null
                ? null
                : path.join(opts.walArchiveRoot, path.basename(dirsFor(id).walDir)),
          },
          opts.queueMaxItems,
          opts.youngGenMb,
          opts.stageTrace,
        ),
      );
    }
    try {
      await Promise.all(shards.map((s) => s.ready()));
    } catch (err) {
      await Promise.all(shards.map((s) => s.worker.terminate()));
      throw err;
    }
    return new ShardPool(shards, opts);
  }

  get shardCount(): number {
    return this.shards.length;
  }

  private shard(id: number): ShardHandle {
    const s = this.shards[id];
    if (s === undefined) throw new RangeError(`no shard ${id}`);
    return s;
  }

  /** traceSeq: the request's stage trace row (RouteContext.traceSeq), 0 for none. */
  write(shardId: number, records: Uint8Array[], traceSeq = 0): Promise<WriteResult> {
    return this.shard(shardId).write(records, traceSeq);
  }

  get(shardId: number, id: string): Promise<string | null> {
    return this.shard(shardId).query({ t: "get", id });
  }

  /**
   * Any other request (lenses, state writes, sources, epoch marks); the caller knows the
   * answer's shape from the message type (see protocol.ts).
   */
  request<T>(shardId: number, msg: QueryWithoutReq): Promise<T> {
    return this.shard(shardId).query<T>(msg);
  }

  // [concepts] suggest: the shard's best `limit` concept paths for q (bounded scan).
  suggestConcepts(
    shardId: number,
    q: string,
    limit: number,
    maxScanKeys: number,
  ): Promise<ShardSuggestResult> {
    return this.shard(shardId).query({ t: "concepts", q, limit, maxScanKeys });
  }

  backup(shardId: number, walDir: string, dbDir: string): Promise<ShardBackupResult> {
    return this.shard(shardId).query({ t: "backup", walDir, dbDir });
  }

  info(shardId: number): Promise<ShardInfo> {
    return this.shard(shardId).query({ t: "info" });
  }

  metricsCollectors(): Array<() => Promise<MetricObjectWithValues[]>> {
    return this.shards.map((s) => () => s.query<MetricObjectWithValues[]>({ t: "metrics" }));
  }

  /** Whether the shard's thread has exited (its requests fail with `exited`). */
  exited(shardId: number): boolean {
    return this.shard(shardId).exited;
  }

  /** The shard's shown / committed LSNs (snapshot reads on the main thread, shard_reads.ts). */
  visibility(shardId: number): ReadVisibility {
    return this.shard(shardId).visibility;
  }

  queueDepth(shardId: number): number {
    return this.shard(shardId).depthItems;
  }

  /**
   * Drains in-flight writes, checkpoints every shard and stops the threads, waiting at most
   * SHARD_CLOSE_TIMEOUT_MS for each. Returns what failed ("shard N: why"); a shard that did
   * not checkpoint loses nothing (its WAL replays at the next start), but the caller says so.
   */
  async close(): Promise<string[]> {
    clearInterval(this.sweepTimer);
    const closed = await Promise.allSettled(
      this.shards.map((s) => withTimeout(s.query({ t: "close" }), SHARD_CLOSE_TIMEOUT_MS)),
    );
    await Promise.allSettled(this.shards.map((s) => s.worker.terminate()));
    return closed.flatMap((r, id) =>
      r.status === "rejected" ? [`shard ${id}: ${(r.reason as Error).message}`] : [],
    );
  }

  get options(): ShardPoolOptions {
    return this.opts;
  }
}

export type { ShardErrorBody };
