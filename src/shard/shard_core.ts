// One shard's engine, independent of threads: the WAL is the source of truth, the LMDB store
// holds the materialized state. A write is appended to the WAL, acknowledged once durable,
// and applied to LMDB right after the acknowledgement is handed out (in the same turn, so
// any later message to this shard reads its own writes).
import fs from "node:fs";
import path from "node:path";
import { decodeSourceRecord, decodeStateEvent } from "../domain/state_events.js";
import { AssertionStatus } from "../schema/generated/stemedb_generated.js";
import type { AssertionStatusName } from "../store/assertion_codec.js";
import {
  type AssertionRecord,
  assertionView,
  CorruptRecordError,
  decodeAssertion,
  setRecordLsn,
} from "../store/assertion_codec.js";
import {
  type ApplyEntry,
  type AssertionFacts,
  MAX_APPLY_BATCH_ENTRIES,
  ShardStore,
  WalRecordKind,
} from "../store/shard_store.js";
import { LIVE_LSN, statusAsOf, withStatus } from "../store/state_reads.js";
import { WalUnavailableError } from "../wal/errors.js";
import { RECORD_HEADER_BYTES } from "../wal/format.js";
import { Wal, type WalObserver } from "../wal/wal.js";

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
  /** Called when an async LMDB apply commits (or fails): records, seconds from issue to commit. */
  onApplied?: (records: number, seconds: number, ok: boolean) => void;
}

export const WRITE_NEW = 0;
export const WRITE_DUPLICATE = 1;

export interface WriteOutcome {
  /** LSN per item (the original LSN for a duplicate). */
  lsns: Float64Array;
  /** WRITE_NEW or WRITE_DUPLICATE per item. */
  flags: Uint8Array;
}

export type WriteCallback = (err: Error | null, outcome: WriteOutcome | null) => void;

const REPLAY_BATCH_RECORDS = 4096;
/** Acknowledged records held in memory until LMDB commits them, at most. */
const MAX_OVERLAY_RECORDS = 1_000_000;
const DEFAULT_CHECKPOINT_EVERY_RECORDS = 100_000;
const DEFAULT_CHECKPOINT_INTERVAL_MS = 5_000;

export interface RecoveryReport {
  replayedRecords: number;
  tornTailTruncations: number;
  droppedRecords: number;
  durationMs: number;
}

export class ShardCore {
  readonly shardId: number;
  readonly store: ShardStore;
  readonly wal: Wal;
  readonly recovery: RecoveryReport;
  private readonly checkpointEveryRecords: number;
  private readonly checkpointIntervalMs: number;
  private readonly onApplied: (records: number, seconds: number, ok: boolean) => void;

  /** Appended, not yet durable: id -> lsn (duplicates inside the durability window). */
  private readonly unapplied = new Map<string, number>();
  private pendingEntries: ApplyEntry[] = [];
  private pendingIds: string[] = [];
  /**
   * Durable and acknowledged but not yet committed in LMDB (async apply): served from here so
   * every read sees every acknowledged write. id -> payload, concept -> newest payload.
   */
  private readonly overlayById = new Map<string, Uint8Array>();
  private readonly overlayLatest = new Map<string, Uint8Array>();
  /**
   * Status changes appended but not yet committed in LMDB (target id -> status after it), so
   * the checks of later events see them (a second supersession of the same claim is a 409).
   */
  private readonly statusShadow = new Map<
    string,
    { status: AssertionStatusName; supersededBy: string | null; lsn: number }
  >();
  /** target + "\n" + voter -> LSN of votes LMDB has not committed yet. */
  private readonly uncommittedVotes = new Map<string, number>();
  /** Highest LSN of a status change, vote or source handed to LMDB; reads wait for it. */
  private stateAppliedLsn = 0;
  /** Highest LSN LMDB has committed. */
  private committedLsn = 0;
  private lastCheckpointLsn: number;
  private lastCheckpointAtMs = Date.now();
  private checkpointRunning: Promise<number> | null = null;
  private checkpointTimer: NodeJS.Timeout | null = null;
  private applyError: Error | null = null;
  /** While a backup copies WAL segments, checkpoints (which recycle segments) wait. */
  private backupRunning = false;

  static async open(opts: ShardCoreOptions): Promise<ShardCore> {
    const started = performance.now();
    fs.mkdirSync(opts.dbDir, { recursive: true });
    const store = ShardStore.open({ dir: opts.dbDir, shardId: opts.shardId });
    let replay: ApplyEntry[] = [];
    // Replay uses the async apply too (lmdb-js commits on its own thread, in order); the WAL
    // never holds one id twice (writes are deduplicated before append), and re-putting a
    // record that LMDB already has at the same LSN is idempotent.
    const flushReplay = () => {
      if (replay.length > 0) void store.applyBatchAsync(replay);
      replay = [];
    };
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
      onRecord: (kind, lsn, payload) => {
        const copy = Uint8Array.prototype.slice.call(payload);
        replay.push(replayEntry(kind, lsn, copy));
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
    };
    return new ShardCore(opts, store, wal, recovery);
  }

  private constructor(
    opts: ShardCoreOptions,
    store: ShardStore,
    wal: Wal,
    recovery: RecoveryReport,
  ) {
    this.shardId = opts.shardId;
    this.store = store;
    this.wal = wal;
    this.recovery = recovery;
    this.lastCheckpointLsn = store.appliedLsn;
    this.committedLsn = store.appliedLsn;
    this.checkpointEveryRecords = opts.checkpointEveryRecords ?? DEFAULT_CHECKPOINT_EVERY_RECORDS;
    this.checkpointIntervalMs = opts.checkpointIntervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS;
    this.onApplied = opts.onApplied ?? (() => {});
    this.checkpointTimer = setInterval(
      () => this.maybeCheckpoint(),
      Math.min(this.checkpointIntervalMs, 1000),
    );
    this.checkpointTimer.unref();
  }

  /** Why writes are refused right now, or null. */
  get writeBlocker(): Error | null {
    return this.applyError ?? this.wal.unavailable;
  }

  /**
   * Writes encoded assertions (ids inside). Each new record gets its LSN patched in place,
   * is framed into the WAL, and the callback fires once all are durable. Records whose id
   * exists (stored or in flight) are reported as duplicates with their original LSN.
   */
  write(records: ReadonlyArray<Uint8Array>, done: WriteCallback): void {
    const blocker = this.writeBlocker;
    if (blocker !== null) {
      done(blocker, null);
      return;
    }
    if (this.overlayById.size + records.length > MAX_OVERLAY_RECORDS) {
      // LMDB's commits lag this far behind: refuse rather than grow memory without bound.
      done(
        new WalUnavailableError(
          "backpressure",
          `shard ${this.shardId} is waiting for LMDB to catch up; retry shortly`,
        ),
        null,
      );
      return;
    }
    let payloadBytes = 0;
    for (const r of records) payloadBytes += RECORD_HEADER_BYTES + r.byteLength;
    if (!this.wal.canAppendBatch(payloadBytes, records.length)) {
      done(
        new WalUnavailableError(
          "backpressure",
          `shard ${this.shardId} WAL buffers are full; retry shortly`,
        ),
        null,
      );
      return;
    }
    const count = records.length;
    const outcome: WriteOutcome = { lsns: new Float64Array(count), flags: new Uint8Array(count) };
    let lastLsn = 0;
    /** Highest LSN this answer depends on: new records and in-flight originals of duplicates. */
    let waitLsn = 0;
    for (let i = 0; i < count; i++) {
      const bytes = records[i] as Uint8Array;
      const view = assertionView(bytes);
      const id = view.id() ?? "";
      const inFlight = this.unapplied.get(id);
      const pending = this.overlayById.get(id);
      const existing =
        inFlight ??
        (pending !== undefined ? Number(assertionView(pending).lsn()) : undefined) ??
        this.store.withAssertion(id, (v) => Number(v.lsn()));
      if (existing !== undefined) {
        outcome.lsns[i] = existing;
        outcome.flags[i] = WRITE_DUPLICATE;
        // A duplicate of a record not yet durable is acknowledged only with that record.
        if (inFlight !== undefined && inFlight > waitLsn) waitLsn = inFlight;
        continue;
      }
      const lsn = this.wal.nextLsn;
      setRecordLsn(bytes, lsn);
      let appended: number;
      try {
        appended = this.wal.append(WalRecordKind.AssertionInsert, bytes);
      } catch (err) {
        // Items appended before this one still become durable and are applied; the caller
        // gets an error for the whole call and a retry reports them as duplicates.
        if (lastLsn > 0) this.wal.whenDurable(lastLsn, () => this.applyDurable());
        done(err as Error, null);
        return;
      }
      if (appended !== lsn) throw new Error(`WAL assigned LSN ${appended}, expected ${lsn}`);
      this.unapplied.set(id, lsn);
      const decoded = decodedFields(view, id);
      if (decoded.supersedes !== null) {
        this.statusShadow.set(decoded.supersedes, {
          status: "superseded",
          supersededBy: id,
          lsn,
        });
      }
      this.pendingEntries.push({
        lsn,
        kind: WalRecordKind.AssertionInsert,
        payload: bytes,
        decoded,
      });
      this.pendingIds.push(id);
      outcome.lsns[i] = lsn;
      lastLsn = lsn;
    }
    if (lastLsn > waitLsn) waitLsn = lastLsn;
    if (waitLsn === 0) {
      done(null, outcome);
      return;
    }
    this.wal.whenDurable(waitLsn, (err) => {
      if (err !== null) {
        this.dropFailedPending();
        done(err, null);
        return;
      }
      done(null, outcome);
      this.applyDurable();
    });
  }

  /** Hands every durable pending entry to LMDB (async commit) and serves it from memory meanwhile. */
  private applyDurable(): void {
    const durable = this.wal.durableLsn;
    const entries = this.pendingEntries;
    let n = 0;
    while (n < entries.length && (entries[n] as ApplyEntry).lsn <= durable) n++;
    if (n === 0) return;
    const batch = n === entries.length ? entries : entries.slice(0, n);
    if (n === entries.length) {
      this.pendingEntries = [];
      this.pendingIds = [];
    } else {
      this.pendingEntries = entries.slice(n);
      this.pendingIds = this.pendingIds.slice(n);
    }
    for (let i = 0; i < n; i++) {
      const entry = batch[i] as ApplyEntry;
      const d = entry.decoded;
      if (d === undefined || d.supersedes !== null) this.stateAppliedLsn = entry.lsn;
      if (d === undefined) continue;
      this.unapplied.delete(d.id);
      this.overlayById.set(d.id, entry.payload);
      if (d.active) this.overlayLatest.set(d.concept, entry.payload);
    }
    const lastLsn = (batch[n - 1] as ApplyEntry).lsn;
    let committed: Promise<void> = Promise.resolve();
    try {
      for (let from = 0; from < n; from += MAX_APPLY_BATCH_ENTRIES) {
        committed = this.store.applyBatchAsync(batch.slice(from, from + MAX_APPLY_BATCH_ENTRIES));
      }
    } catch (err) {
      // The WAL holds these records; a restart replays them. Until then refuse writes.
      this.applyError = err as Error;
      return;
    }
    const issuedAt = performance.now();
    committed.then(
      () => {
        this.onApplied(n, (performance.now() - issuedAt) / 1000, true);
        if (lastLsn > this.committedLsn) this.committedLsn = lastLsn;
        for (let i = 0; i < n; i++) {
          const entry = batch[i] as ApplyEntry;
          const target = entry.event?.target ?? entry.decoded?.supersedes ?? null;
          if (target !== null && this.statusShadow.get(target)?.lsn === entry.lsn)
            this.statusShadow.delete(target);
          if (entry.event?.k === "vote") {
            const key = `${entry.event.target}\n${entry.event.actor}`;
            if (this.uncommittedVotes.get(key) === entry.lsn) this.uncommittedVotes.delete(key);
          }
          const d = entry.decoded;
          if (d === undefined) continue;
          if (this.overlayById.get(d.id) === entry.payload) this.overlayById.delete(d.id);
          if (this.overlayLatest.get(d.concept) === entry.payload)
            this.overlayLatest.delete(d.concept);
        }
      },
      (err: unknown) => {
        this.onApplied(n, (performance.now() - issuedAt) / 1000, false);
        this.applyError = err as Error;
      },
    );
  }

  /**
   * Appends one state event or source record (already checked by the caller, see
   * state_ops.ts) and calls back with its LSN once durable. `shadow` is the target's status
   * after the event, for the checks of events that follow before LMDB commits this one.
   */
  appendRecord(
    entry: Omit<ApplyEntry, "lsn">,
    shadow: { target: string; status: AssertionStatusName; supersededBy: string | null } | null,
    done: (err: Error | null, lsn: number) => void,
  ): void {
    const blocker = this.writeBlocker;
    if (blocker !== null) {
      done(blocker, 0);
      return;
    }
    if (!this.wal.canAppendBatch(RECORD_HEADER_BYTES + entry.payload.byteLength, 1)) {
      done(
        new WalUnavailableError("backpressure", `shard ${this.shardId} WAL buffers are full`),
        0,
      );
      return;
    }
    let lsn: number;
    try {
      lsn = this.wal.append(entry.kind, entry.payload);
    } catch (err) {
      done(err as Error, 0);
      return;
    }
    if (shadow !== null) {
      this.statusShadow.set(shadow.target, {
        status: shadow.status,
        supersededBy: shadow.supersededBy,
        lsn,
      });
    }
    if (entry.event?.k === "vote") {
      this.uncommittedVotes.set(`${entry.event.target}\n${entry.event.actor}`, lsn);
    }
    this.pendingEntries.push({ ...entry, lsn });
    this.pendingIds.push("");
    this.wal.whenDurable(lsn, (err) => {
      if (err !== null) {
        this.dropFailedPending();
        done(err, 0);
        return;
      }
      done(null, lsn);
      this.applyDurable();
    });
  }

  /**
   * The live state of an assertion, including writes not yet durable or committed: what the
   * checks of votes, supersessions and retractions must see.
   */
  currentRecord(id: string): AssertionRecord | undefined {
    let rec: AssertionRecord | undefined;
    if (this.unapplied.has(id)) {
      const entry = this.pendingEntries.find((e) => e.decoded?.id === id);
      rec = entry === undefined ? undefined : decodeAssertion(entry.payload);
    } else {
      rec = this.getRecordWithoutStatus(id);
    }
    if (rec === undefined) return undefined;
    const shadow = this.statusShadow.get(id);
    if (shadow !== undefined) {
      return withStatus(rec, { status: shadow.status, supersededBy: shadow.supersededBy });
    }
    return withStatus(rec, statusAsOf(this.store.dbs, rec, LIVE_LSN));
  }

  /** Whether `voter` has a vote on `target` that LMDB has not committed yet. */
  hasUncommittedVote(target: string, voter: string): boolean {
    return this.uncommittedVotes.has(`${target}\n${voter}`);
  }

  /** Whether a source id exists, durable or in flight. */
  hasSource(id: string): boolean {
    if (this.store.dbs.sources.doesExist(id)) return true;
    return this.pendingEntries.some((e) => e.source?.id === id);
  }

  /**
   * Resolves when LMDB has committed every acknowledged status change, vote and source, so
   * reads of statuses are current. Bounded: under a steady stream of such writes it gives up
   * after a few commits (the answer is then at most that many commits old).
   */
  async stateBarrier(): Promise<void> {
    for (let i = 0; i < 4 && this.committedLsn < this.stateAppliedLsn; i++) {
      await this.store.settled();
    }
  }

  /**
   * The LSN a new epoch records for this shard: every record appended before the call, once
   * durable (or, if that flush fails, the durable point, since failed LSNs are reused).
   */
  epochMark(done: (lsn: number) => void): void {
    const target = this.wal.nextLsn - 1;
    if (target <= this.wal.durableLsn) {
      done(target);
      return;
    }
    this.wal.whenDurable(target, (err) => done(err === null ? target : this.wal.durableLsn));
  }

  /** Records appended to the WAL and not yet durable. */
  get pendingRecords(): number {
    return this.pendingEntries.length;
  }

  private getRecordWithoutStatus(id: string): AssertionRecord | undefined {
    const pending = this.overlayById.get(id);
    return pending !== undefined ? decodeAssertion(pending) : this.store.getAssertion(id);
  }

  /** Acknowledged record by id with its live status (call after stateBarrier()). */
  getAssertion(id: string): AssertionRecord | undefined {
    const rec = this.getRecordWithoutStatus(id);
    if (rec === undefined) return undefined;
    const shadow = this.statusShadow.get(id);
    if (shadow !== undefined) return withStatus(rec, shadow);
    return withStatus(rec, statusAsOf(this.store.dbs, rec, LIVE_LSN));
  }

  /**
   * Newest active assertion of a concept (call after stateBarrier()). An acknowledged insert
   * LMDB has not committed yet is newer than anything committed, so it wins unless a status
   * change (in flight) took it out.
   */
  latest(concept: string): AssertionRecord | undefined {
    const pending = this.overlayLatest.get(concept);
    if (pending !== undefined) {
      const rec = decodeAssertion(pending);
      const shadow = this.statusShadow.get(rec.id);
      if (shadow === undefined || shadow.status === "active") return rec;
    }
    return this.store.latest(concept);
  }

  /** Resolves once LMDB has committed every applied entry (range reads need that). */
  settled(): Promise<void> {
    return this.store.settled();
  }

  /** After a failed batch the WAL reuses the LSNs past its durable point: forget those records. */
  private dropFailedPending(): void {
    const durable = this.wal.durableLsn;
    this.applyDurable();
    const keep = this.pendingEntries.filter((e) => e.lsn <= durable);
    for (let i = keep.length; i < this.pendingIds.length; i++)
      this.unapplied.delete(this.pendingIds[i] as string);
    this.pendingIds = this.pendingIds.slice(0, keep.length);
    this.pendingEntries = keep;
    for (const [target, shadow] of this.statusShadow) {
      if (shadow.lsn > durable) this.statusShadow.delete(target);
    }
    for (const [key, lsn] of this.uncommittedVotes) {
      if (lsn > durable) this.uncommittedVotes.delete(key);
    }
  }

  private maybeCheckpoint(): void {
    if (this.checkpointRunning !== null || this.backupRunning) return;
    const applied = this.store.appliedLsn;
    const due =
      applied - this.lastCheckpointLsn >= this.checkpointEveryRecords ||
      (applied > this.lastCheckpointLsn &&
        Date.now() - this.lastCheckpointAtMs >= this.checkpointIntervalMs);
    if (due) void this.checkpoint().catch(() => {});
  }

  /** Makes LMDB durable up to the applied LSN, then recycles WAL segments behind it. */
  checkpoint(): Promise<number> {
    if (this.checkpointRunning !== null) return this.checkpointRunning;
    const running = this.store
      .checkpoint()
      .then(async (lsn) => {
        this.lastCheckpointLsn = lsn;
        this.lastCheckpointAtMs = Date.now();
        await this.wal.releaseUpTo(lsn);
        return lsn;
      })
      .finally(() => {
        this.checkpointRunning = null;
      });
    this.checkpointRunning = running;
    return running;
  }

  /**
   * Online backup of this shard into walDir/dbDir (both empty): an LMDB snapshot, then every
   * live WAL segment. Checkpoints pause meanwhile so no segment is recycled under the copy.
   * `cutLsn`: every write acknowledged before the call is at or below it and in the copy.
   */
  async backup(
    walDir: string,
    dbDir: string,
  ): Promise<{ cutLsn: number; snapshotLsn: number; walFiles: string[] }> {
    if (this.backupRunning) throw new Error(`shard ${this.shardId}: a backup is already running`);
    this.backupRunning = true;
    try {
      if (this.checkpointRunning !== null) await this.checkpointRunning;
      const cutLsn = this.wal.durableLsn;
      fs.mkdirSync(dbDir, { recursive: true });
      fs.mkdirSync(walDir, { recursive: true });
      const snapshotLsn = await this.store.backupTo(dbDir);
      const walFiles: string[] = [];
      for (const segment of this.wal.segmentsInfo()) {
        const target = path.join(walDir, path.basename(segment.path));
        await fs.promises.copyFile(segment.path, target);
        walFiles.push(target);
      }
      return { cutLsn, snapshotLsn, walFiles };
    } finally {
      this.backupRunning = false;
    }
  }

  get checkpointLsn(): number {
    return this.lastCheckpointLsn;
  }

  async close(): Promise<void> {
    if (this.checkpointTimer !== null) clearInterval(this.checkpointTimer);
    this.checkpointTimer = null;
    await this.wal.close();
    this.applyDurable();
    await this.store.settled();
    if (this.checkpointRunning !== null) await this.checkpointRunning;
    await this.checkpoint();
    await this.store.close();
  }
}

function decodedFields(view: ReturnType<typeof assertionView>, id: string): AssertionFacts {
  return {
    id,
    concept: view.concept() ?? "",
    agent: view.agent() ?? "",
    active: view.status() === AssertionStatus.Active,
    supersedes: view.supersedes(),
  };
}

/** A WAL record read back at recovery, decoded the way the live writer would have. */
function replayEntry(kind: number, lsn: number, payload: Uint8Array): ApplyEntry {
  if (kind === WalRecordKind.StateEvent)
    return { lsn, kind, payload, event: decodeStateEvent(payload) };
  if (kind === WalRecordKind.SourceInsert)
    return { lsn, kind, payload, source: decodeSourceRecord(payload) };
  const view = assertionView(payload);
  const id = view.id();
  if (id === null) throw new CorruptRecordError("a replayed WAL record has no assertion id");
  return { lsn, kind, payload, decoded: decodedFields(view, id) };
}

export function shardDirs(
  walRoot: string,
  dbRoot: string,
  shardId: number,
): { walDir: string; dbDir: string } {
  const name = `shard-${String(shardId).padStart(3, "0")}`;
  return { walDir: path.join(walRoot, name), dbDir: path.join(dbRoot, name) };
}
