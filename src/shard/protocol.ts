// Messages between the main thread and a shard owner thread. Writes travel as one
// transferred ArrayBuffer of encoded records per coalesced batch (no structured clone of
// objects); query answers carry pre-rendered JSON text.

export interface ShardWorkerData {
  shardId: number;
  walDir: string;
  dbDir: string;
  segmentSizeBytes: number;
  syncMode: "dsync" | "fdatasync";
  direct: boolean;
  repair: boolean;
  walArchiveDir: string | null;
}

export interface ShardInfo {
  shardId: number;
  walMode: "direct" | "buffered";
  syncMode: "dsync" | "fdatasync";
  nextLsn: number;
  durableLsn: number;
  appliedLsn: number;
  checkpointLsn: number;
  walSegments: number;
  records: number;
  concepts: number;
  writable: boolean;
  writeBlocker: string | null;
  recovery: {
    replayedRecords: number;
    tornTailTruncations: number;
    droppedRecords: number;
    durationMs: number;
  };
}

export interface WriteRequest {
  t: "write";
  req: number;
  /** Encoded records back to back; record i spans [offsets[i], offsets[i + 1]). */
  buf: ArrayBuffer;
  offsets: Uint32Array;
}

export interface PageRequest {
  limit: number;
  cursor: string | null;
}

export type QueryRequest =
  | { t: "get"; req: number; id: string }
  | { t: "latest"; req: number; concept: string }
  | ({ t: "history"; req: number; concept: string } & PageRequest)
  | { t: "under"; req: number; prefix: string; after: string | null; limit: number }
  | { t: "info"; req: number }
  // [concepts] suggest: score this shard's concept paths (src/shard/concept_scan.ts)
  | { t: "concepts"; req: number; q: string; limit: number; maxScanKeys: number }
  | { t: "metrics"; req: number }
  | { t: "checkpoint"; req: number }
  | { t: "backup"; req: number; walDir: string; dbDir: string }
  | { t: "close"; req: number };

export type ShardRequest = WriteRequest | QueryRequest;

export interface ShardBackupResult {
  cutLsn: number;
  snapshotLsn: number;
  walFiles: string[];
}

export interface WriteResult {
  lsns: Float64Array;
  flags: Uint8Array;
}

/** A page of pre-rendered assertion JSON objects; `keys` are the sort keys (concept for `under`). */
export interface RenderedPage {
  items: string[];
  keys: string[];
  nextCursor: string | null;
}

export interface ShardErrorBody {
  /** WalUnavailableError reason, "invalid_cursor", "corrupt_record", or "internal". */
  reason: string;
  message: string;
}

export type ShardResponse =
  | { t: "res"; req: number; ok: true; value: unknown }
  | { t: "res"; req: number; ok: false; error: ShardErrorBody };

export type ShardEvent =
  | { t: "ready"; info: ShardInfo }
  | { t: "fatal"; message: string; code: string | null };
