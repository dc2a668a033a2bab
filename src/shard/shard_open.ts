// Starting a shard: open its LMDB store, then its WAL, replaying every record after the
// store's applied LSN into LMDB. Recovery runs once per start and shares nothing with the
// write path but the record decoding (assertionFacts), so it lives apart from ShardCore.
import fs from "node:fs";
import path from "node:path";
import { decodeSourceRecord, decodeStateEvent } from "../domain/state_events.js";
import { AssertionStatus } from "../schema/generated/stemedb_generated.js";
import { type ApplyEntry, type AssertionFacts, WalRecordKind } from "../store/apply.js";
import {
  type assertionView,
  CorruptRecordError,
  scratchAssertionView,
} from "../store/assertion_codec.js";
import { ShardStore } from "../store/shard_store.js";
import { Wal } from "../wal/wal.js";
import type { ShardCoreOptions } from "./core_options.js";

/** Records per LMDB transaction during replay. */
const REPLAY_BATCH_RECORDS = 4096;

export interface RecoveryReport {
  replayedRecords: number;
  tornTailTruncations: number;
  droppedRecords: number;
  durationMs: number;
  /** Store format this open upgraded from (2), or null (shard_store.ts formatUpgrade). */
  formatUpgradedFrom: number | null;
}

export interface OpenedShard {
  store: ShardStore;
  wal: Wal;
  recovery: RecoveryReport;
}

/** Opens the store and the WAL and replays the WAL into the store (settled on return). */
export async function openShard(opts: ShardCoreOptions): Promise<OpenedShard> {
  const started = performance.now();
  fs.mkdirSync(opts.dbDir, { recursive: true });
  const store = ShardStore.open({ dir: opts.dbDir, shardId: opts.shardId });
  let replay: ApplyEntry[] = [];
  // Replay uses the async apply too (lmdb-js commits on its own thread, in order: 2.7× the
  // rate of synchronous transactions here). The WAL never holds one id twice (writes are
  // deduplicated before append), and re-putting a record that LMDB already has at the same
  // LSN is idempotent.
  const flushReplay = () => {
    // Failures surface in the settled() awaited after replay; catch here so none is unhandled.
    if (replay.length > 0) store.applyBatchAsync(replay).catch(() => {});
    replay = [];
  };
  const targets = new ReplayTargets(store);
  const wal = await Wal.open({
    dir: opts.walDir,
    shardId: opts.shardId,
    segmentSizeBytes: opts.segmentSizeBytes,
    syncMode: opts.syncMode ?? "dsync",
    direct: opts.direct ?? true,
    repair: opts.repair ?? false,
    checkpointLsn: store.appliedLsn,
    observer: opts.walObserver,
    archiveDir: opts.walArchiveDir ?? null,
    flushMode: opts.walFlushMode ?? "pool",
    onRecord: (kind, lsn, payload) => {
      const copy = Uint8Array.prototype.slice.call(payload);
      replay.push(targets.resolve(replayEntry(kind, lsn, copy)));
      if (replay.length >= REPLAY_BATCH_RECORDS) flushReplay();
    },
  });
  flushReplay();
  await store.settled();
  const recovery: RecoveryReport = {
    replayedRecords: wal.recovery.replayedRecords,
    tornTailTruncations: wal.recovery.tornTailTruncations,
    droppedRecords: wal.recovery.droppedRecords,
    durationMs: performance.now() - started,
    formatUpgradedFrom: store.formatUpgrade?.from ?? null,
  };
  return { store, wal, recovery };
}

/** What the store needs of an assertion to index it, read from its FlatBuffer once. */
export function assertionFacts(view: ReturnType<typeof assertionView>, id: string): AssertionFacts {
  return {
    id,
    concept: view.concept() ?? "",
    agent: view.agent() ?? "",
    active: view.status() === AssertionStatus.Active,
    supersedes: view.supersedes(),
  };
}

/**
 * What the live writer passes along with a status change (the target's concept) and a
 * supersession (the superseded record's LSN), found again at replay: a target replayed in
 * this open may not be committed yet (the WAL scan is synchronous, so none of its batches
 * commits before it ends), so replayed inserts are remembered here; older targets are read
 * from LMDB. Cost: one id -> LSN entry and one array slot per replayed insert (concept
 * strings are shared), ≈ 100 B: 10 MB for the ≤ 100k records a checkpoint leaves, ≈ 1 GB for
 * 10M records of archived WAL replayed onto a restored backup.
 */
class ReplayTargets {
  private readonly lsnOfId = new Map<string, number>();
  /** Concepts of the replayed inserts by LSN - firstLsn (LSNs are dense, so an array). */
  private readonly concepts: string[] = [];
  private readonly interned = new Map<string, string>();
  private firstLsn = -1;

  constructor(private readonly store: ShardStore) {}

  resolve(e: ApplyEntry): ApplyEntry {
    const d = e.decoded;
    if (d !== undefined) {
      if (this.firstLsn < 0) this.firstLsn = e.lsn;
      this.lsnOfId.set(d.id, e.lsn);
      let concept = this.interned.get(d.concept);
      if (concept === undefined) {
        concept = d.concept;
        this.interned.set(concept, concept);
      }
      this.concepts[e.lsn - this.firstLsn] = concept;
      if (d.supersedes !== null)
        d.supersedesLsn = this.lsnOfId.get(d.supersedes) ?? this.store.assertionLsn(d.supersedes);
    } else if (e.event !== undefined && e.event.k !== "vote") {
      const lsn = e.event.target_lsn;
      const replayed =
        this.firstLsn < 0 || lsn < this.firstLsn ? undefined : this.concepts[lsn - this.firstLsn];
      const concept = replayed ?? this.store.conceptAt(lsn);
      if (concept !== undefined) e.targetConcept = concept;
    }
    return e;
  }
}

/** A WAL record read back at recovery, decoded the way the live writer would have. */
function replayEntry(kind: number, lsn: number, payload: Uint8Array): ApplyEntry {
  if (kind === WalRecordKind.StateEvent)
    return { lsn, kind, payload, event: decodeStateEvent(payload) };
  if (kind === WalRecordKind.SourceInsert)
    return { lsn, kind, payload, source: decodeSourceRecord(payload) };
  const view = scratchAssertionView(payload);
  const id = view.id();
  if (id === null) throw new CorruptRecordError("a replayed WAL record has no assertion id");
  return { lsn, kind, payload, decoded: assertionFacts(view, id) };
}

/** A shard's WAL and LMDB directories under the two roots (`shard-NNN`). */
export function shardDirs(
  walRoot: string,
  dbRoot: string,
  shardId: number,
): { walDir: string; dbDir: string } {
  const name = `shard-${String(shardId).padStart(3, "0")}`;
  return { walDir: path.join(walRoot, name), dbDir: path.join(dbRoot, name) };
}
