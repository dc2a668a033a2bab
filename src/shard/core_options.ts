// What a ShardCore is opened with and what its write() answers (shard_core.ts).
import type { WalFlushMode, WalObserver } from "../wal/wal.js";

export interface ShardCoreOptions {
  shardId: number;
  walDir: string;
  dbDir: string;
  segmentSizeBytes: number;
  syncMode?: "dsync" | "fdatasync";
  direct?: boolean;
  repair?: boolean;
  walObserver?: WalObserver;
  /** Copy WAL segments here before recycling them (STEMEDB_WAL_ARCHIVE_DIR/shard-NNN). */
  walArchiveDir?: string | null;
  /** Checkpoint once this many records were applied since the last one. */
  checkpointEveryRecords?: number;
  checkpointIntervalMs?: number;
  /** How the WAL writes and syncs a batch (see WalOptions.flushMode). */
  walFlushMode?: WalFlushMode;
  /** Longest wait before durable records are handed to LMDB (see apply_pipeline.ts). */
  applyDelayMs?: number;
  /** Smallest capacity of the duplicate-check filter, in ids (tests make it small). */
  idFilterMinIds?: number;
  /** Called when an async LMDB apply commits (or fails): records, seconds from issue to commit. */
  onApplied?: (records: number, seconds: number, ok: boolean) => void;
  /**
   * Called as each record touching an assertion is appended (an insert: its id; a status
   * change or vote: the target's id), before it can be durable (read_visibility.ts).
   */
  onAppend?: (id: string, lsn: number) => void;
}

export const WRITE_NEW = 0;
export const WRITE_DUPLICATE = 1;
/**
 * With WRITE_DUPLICATE: the stored record was written quarantined. A retry is answered with
 * the status its first write got, not with what the checks would decide now.
 */
export const WRITE_STORED_QUARANTINED = 2;

export interface WriteOutcome {
  /** LSN per item (the original LSN for a duplicate). */
  lsns: Float64Array;
  /** WRITE_NEW, or WRITE_DUPLICATE with WRITE_STORED_QUARANTINED when it applies, per item. */
  flags: Uint8Array;
}

export type WriteCallback = (err: Error | null, outcome: WriteOutcome | null) => void;
