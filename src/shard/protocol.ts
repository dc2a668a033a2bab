// Messages between the main thread and a shard owner thread. Writes travel as one
// transferred ArrayBuffer of encoded records per coalesced batch (no structured clone of
// objects); query answers carry pre-rendered JSON text.

import type { ConsensusCandidate } from "../domain/consensus.js";

export interface ShardWorkerData {
  shardId: number;
  walDir: string;
  dbDir: string;
  segmentSizeBytes: number;
  syncMode: "dsync" | "fdatasync";
  direct: boolean;
  repair: boolean;
  walArchiveDir: string | null;
  applyDelayMs: number;
  walFlushMode: "pool" | "inline";
  /** READ_VISIBILITY_BYTES shared with the main thread (read_visibility.ts). */
  readVisibility: SharedArrayBuffer;
  /** With the stage trace on, the main thread's clock zero (stage_trace.ts), else null. */
  traceOriginMs: number | null;
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
    formatUpgradedFrom: number | null;
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

/** Lens reads at a boundary: asOfLsn is null for live reads, else the epoch's LSN for this shard. */
export type LensRequest =
  | { t: "lens_latest"; req: number; concept: string; asOfLsn: number | null }
  | ({ t: "lens_history"; req: number; concept: string; asOfLsn: number | null } & PageRequest)
  | {
      t: "lens_active";
      req: number;
      concept: string;
      asOfLsn: number | null;
      limit: number;
      /** Whether each item carries its rendered JSON (consensus only needs the fields). */
      render: boolean;
    }
  | {
      t: "lens_under";
      req: number;
      /**
       * latest: newest active per concept; active: every active assertion per concept;
       * history: every assertion, by concept then newest first.
       */
      mode: "latest" | "active" | "history";
      prefix: string;
      after: string | null;
      /** history: resume inside `after` below this LSN (0 = after the whole concept). */
      afterLsn?: number;
      limit: number;
      asOfLsn: number | null;
    };

/** Writes that change existing state; each is checked by the owning shard against live state. */
export type StateRequest =
  | {
      t: "vote";
      req: number;
      target: string;
      actor: string;
      dir: 1 | -1;
      weight: number;
      atMs: number;
    }
  | {
      t: "status_event";
      req: number;
      kind: "retract" | "approve" | "reject" | "supersede";
      target: string;
      /** supersede: the assertion that replaces the target (escalation resolution). */
      by?: string;
      actor: string;
      /** May act on another agent's assertion (admin for retract; always for decisions). */
      privileged: boolean;
      reason: string | null;
      atMs: number;
    }
  | { t: "supersede"; req: number; buf: ArrayBuffer }
  | { t: "source_put"; req: number; source: import("../domain/state_events.js").SourceRecord }
  | { t: "epoch_mark"; req: number };

export type QueryRequest =
  | LensRequest
  | StateRequest
  | { t: "get"; req: number; id: string }
  | { t: "record"; req: number; id: string }
  | { t: "votes"; req: number; id: string; asOfLsn: number | null; limit: number }
  | { t: "source_get"; req: number; id: string }
  | {
      t: "held_list";
      req: number;
      /** Resume after this LSN (null: from the oldest). */
      after: number | null;
      limit: number;
      agent: string | null;
      concept: string | null;
    }
  | { t: "agent_assertions"; req: number; agent: string; limit: number }
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

/**
 * Queries of one main-thread turn in one message, answered in order of arrival: each
 * postMessage costs both threads a wake-up and an event dispatch (≈ 20 µs here).
 */
export interface QueryBatch {
  t: "batch";
  msgs: QueryRequest[];
}

export type ShardRequest = WriteRequest | QueryRequest | QueryBatch;

export interface ShardBackupResult {
  cutLsn: number;
  snapshotLsn: number;
  walFiles: string[];
}

export interface WriteResult {
  lsns: Float64Array;
  flags: Uint8Array;
  /** With the stage trace on: the shard's stamps (stage_trace.ts SHARD_STAMPS), main's clock. */
  stages?: Float64Array;
}

/** A page of pre-rendered assertion JSON objects; `keys` are the sort keys (concept for `under`). */
export interface RenderedPage {
  items: string[];
  keys: string[];
  nextCursor: string | null;
}

export interface ShardErrorBody {
  /** WalUnavailableError reason, "invalid_cursor", "corrupt_record", "domain" or "internal". */
  reason: string;
  message: string;
  /** reason "domain": the HTTP status and error code the rule maps to. */
  status?: number;
  code?: string;
}

/** One active assertion for a lens the main thread finishes (consensus, trusted). */
export interface ActiveItem extends ConsensusCandidate {
  /** The rendered assertion, when the request asked for it. */
  json: string | null;
}

export interface ActiveList {
  concept: string;
  items: ActiveItem[];
  /** The scan bound stopped before every assertion of the concept was seen. */
  truncated: boolean;
}

/** A record with the fields main-thread rules need, and its rendered JSON. */
export interface RecordFacts {
  json: string;
  id: string;
  concept: string;
  agent: string;
  status: string;
  supersedes: string | null;
  supersededBy: string | null;
  sources: string[];
  authorTrust: number;
  lsn: number;
  recordedAtMs: number;
  valueJson: string;
  /** Why it was written quarantined; null when it was written active. */
  quarantineReason: string | null;
}

/** One quarantined assertion in the admin's pending list. */
export interface HeldItem {
  json: string;
  lsn: number;
  recordedAtMs: number;
}

/** An agent's assertion, for gold-standard verification. */
export interface AgentAssertion {
  id: string;
  concept: string;
  valueJson: string;
  status: string;
}

export interface StateWriteResult {
  lsn: number;
  duplicate: boolean;
  /** vote: the target's author (trust evidence) and concept, and whether this voter had voted before. */
  author?: string;
  concept?: string;
  replaced?: boolean;
  /** status events: the target's status before. */
  previousStatus?: string;
  /** status events answered as duplicates: when the status they asked for was set (ms). */
  decidedAtMs?: number;
}

export type ShardResponse =
  | { t: "res"; req: number; ok: true; value: unknown }
  | { t: "res"; req: number; ok: false; error: ShardErrorBody };

/** Answers the shard produced in one turn, in one message. */
export interface ResponseBatch {
  t: "batch_res";
  items: ShardResponse[];
}

export type ShardEvent =
  | { t: "ready"; info: ShardInfo }
  | { t: "fatal"; message: string; code: string | null };
