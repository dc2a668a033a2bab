// The options of a per-shard WAL (src/wal/wal.ts), their defaults and bounds, resolved once.
import {
  alignUp,
  BLOCK_SIZE_BYTES,
  MAX_RECORD_PAYLOAD_BYTES,
  MIN_SEGMENT_SIZE_BYTES,
  RECORD_HEADER_BYTES,
} from "./format.js";

export interface WalObserver {
  onFlush(records: number, bytes: number, writeNs: number, syncNs: number, flushNs: number): void;
  onError(code: string): void;
  onRotate(): void;
  onSegments(count: number, diskBytes: number): void;
}

export interface WalOptions {
  dir: string;
  shardId: number;
  segmentSizeBytes: number;
  /** Upper bound of one flushed batch; two staging buffers of this size are kept. */
  maxBatchBytes?: number;
  maxBatchRecords?: number;
  /** O_DIRECT (falls back to buffered when the filesystem refuses). */
  direct?: boolean;
  /** "dsync": O_DSYNC on the segment; "fdatasync": a separate fdatasync after each write. */
  syncMode?: "dsync" | "fdatasync";
  checkpointLsn: number;
  repair?: boolean;
  onRecord: (kind: number, lsn: number, payload: Buffer) => void;
  observer?: WalObserver;
  maxSpares?: number;
  retryDelayMs?: number;
  /** Segments behind a checkpoint are copied here (fsynced) before they are recycled. */
  archiveDir?: string | null;
  /**
   * "pool": write + sync on a libuv worker thread, the calling thread stays free (default).
   * "inline": on the calling thread, for a thread that has nothing else to do meanwhile; it
   * saves two thread wake-ups per flush. Either way a batch gathers while one is in flight.
   */
  flushMode?: WalFlushMode;
}

export type WalFlushMode = "pool" | "inline";

const DEFAULT_MAX_BATCH_BYTES = 8 * 1024 * 1024;
const DEFAULT_MAX_BATCH_RECORDS = 65_536;
const MAX_RETRY_DELAY_MS = 5_000;

const NOOP_OBSERVER: WalObserver = {
  onFlush() {},
  onError() {},
  onRotate() {},
  onSegments() {},
};

/** What the log runs with: every option checked, bounded and defaulted. */
export interface ResolvedWalOptions {
  segmentSizeBytes: number;
  maxBatchBytes: number;
  /** Largest payload one record may carry (bounded by the batch size). */
  maxPayloadBytes: number;
  maxBatchRecords: number;
  direct: boolean;
  dsync: boolean;
  maxSpares: number;
  archiveDir: string | null;
  observer: WalObserver;
  flushMode: WalFlushMode;
  retryDelayMs: number;
  maxRetryDelayMs: number;
}

export function resolveWalOptions(opts: WalOptions): ResolvedWalOptions {
  if (
    opts.segmentSizeBytes % BLOCK_SIZE_BYTES !== 0 ||
    opts.segmentSizeBytes < MIN_SEGMENT_SIZE_BYTES
  ) {
    throw new RangeError(
      `segmentSizeBytes must be a multiple of 4096 and >= ${MIN_SEGMENT_SIZE_BYTES}`,
    );
  }
  // A batch always fits in a segment after its header block.
  const maxBatchBytes = Math.min(
    alignUp(opts.maxBatchBytes ?? DEFAULT_MAX_BATCH_BYTES),
    opts.segmentSizeBytes - BLOCK_SIZE_BYTES,
  );
  return {
    segmentSizeBytes: opts.segmentSizeBytes,
    maxBatchBytes,
    maxPayloadBytes: Math.min(MAX_RECORD_PAYLOAD_BYTES, maxBatchBytes - RECORD_HEADER_BYTES),
    maxBatchRecords: opts.maxBatchRecords ?? DEFAULT_MAX_BATCH_RECORDS,
    direct: opts.direct ?? true,
    dsync: (opts.syncMode ?? "dsync") === "dsync",
    maxSpares: opts.maxSpares ?? 2,
    archiveDir: opts.archiveDir ?? null,
    observer: opts.observer ?? NOOP_OBSERVER,
    flushMode: opts.flushMode ?? "pool",
    retryDelayMs: opts.retryDelayMs ?? 250,
    maxRetryDelayMs: MAX_RETRY_DELAY_MS,
  };
}

/**
 * The batch bounds a shard's WAL runs with for this segment size (default batch options), for
 * the main thread, which sizes its write messages so that one always fits.
 */
export function walBatchBounds(segmentSizeBytes: number): {
  maxBatchBytes: number;
  maxBatchRecords: number;
} {
  const o = resolveWalOptions({
    dir: "",
    shardId: 0,
    segmentSizeBytes,
    checkpointLsn: 0,
    onRecord: () => {},
  });
  return { maxBatchBytes: o.maxBatchBytes, maxBatchRecords: o.maxBatchRecords };
}
