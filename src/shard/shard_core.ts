// One shard's engine, independent of threads: the WAL is the source of truth, the LMDB store
// holds the materialized state. A write is appended to the WAL, acknowledged once durable,
// and applied to LMDB right after the acknowledgement is handed out (in the same turn, so
// any later message to this shard reads its own writes).
//
// Here: the write/apply pipeline and the reads that must see it. Its options and write
// outcomes are in core_options.ts, opening and replay in shard_open.ts, state between append
// and commit in pending_state.ts, checkpoints and backups in checkpointer.ts.
import {
  AssertionStatus,
  type Assertion as AssertionView,
} from "../schema/generated/stemedb_generated.js";
import { type ApplyEntry, WalRecordKind } from "../store/apply.js";
import {
  type AssertionRecord,
  type AssertionStatusName,
  decodeAssertion,
  scratchAssertionView,
  setViewLsn,
} from "../store/assertion_codec.js";
import { IdFilter } from "../store/id_filter.js";
import { isNoSpace, lmdbFailureCause } from "../store/lmdb_failure.js";
import type { ShardStore } from "../store/shard_store.js";
import { LIVE_LSN, statusAsOf, withStatus } from "../store/state_reads.js";
import { WalUnavailableError } from "../wal/errors.js";
import { RECORD_HEADER_BYTES } from "../wal/format.js";
import type { Wal } from "../wal/wal.js";
import { ApplyPipeline } from "./apply_pipeline.js";
import { type BackupResult, Checkpointer } from "./checkpointer.js";
import {
  type ShardCoreOptions,
  WRITE_DUPLICATE,
  WRITE_STORED_QUARANTINED,
  type WriteCallback,
  type WriteOutcome,
} from "./core_options.js";
import { PendingState } from "./pending_state.js";
import { assertionFacts, openShard, type RecoveryReport } from "./shard_open.js";

export type { RecoveryReport };

/** A failed LMDB commit as the error writes and range reads get (503, or 507 when full). */
function lmdbUnavailable(shardId: number, dbDir: string, err: Error): WalUnavailableError {
  const code = (err as { code?: unknown }).code;
  return new WalUnavailableError(
    isNoSpace(err, dbDir) ? "store_full" : "store_error",
    `shard ${shardId}: an LMDB commit failed (${err.message}); writes and range reads are refused until a restart replays the WAL`,
    code === undefined ? null : String(code),
  );
}

/** Whether a stored record was written active (its status field is the one at write). */
function wasWrittenActive(view: AssertionView): boolean {
  return view.status() === AssertionStatus.Active;
}

/** Acknowledged records held in memory until LMDB commits them, at most. */
const MAX_OVERLAY_RECORDS = 1_000_000;

export class ShardCore {
  readonly shardId: number;
  readonly store: ShardStore;
  readonly wal: Wal;
  readonly recovery: RecoveryReport;
  /** Appended-not-durable entries, the read-your-writes overlay, status shadow, votes. */
  private readonly pending: PendingState;
  private readonly checkpointer: Checkpointer;
  private readonly applier: ApplyPipeline;
  /** Says "certainly new" for most new ids, so the duplicate check skips LMDB (id_filter.ts). */
  readonly idFilter: IdFilter;
  private applyError: Error | null = null;
  private readonly onAppend: (id: string, lsn: number) => void;

  static async open(opts: ShardCoreOptions): Promise<ShardCore> {
    const { store, wal, recovery } = await openShard(opts);
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
    this.pending = new PendingState(store.appliedLsn);
    this.applier = new ApplyPipeline(
      store,
      this.pending,
      {
        onApplied: opts.onApplied ?? (() => {}),
        onError: (err) => {
          // The WAL holds these records; a restart replays them. Until then refuse writes,
          // and range reads, which read LMDB alone and would miss acknowledged records.
          const first = lmdbUnavailable(this.shardId, opts.dbDir, err);
          this.applyError = first;
          // lmdb-js's error is generic; its cause (no space, EIO, …) arrives in this turn.
          void lmdbFailureCause(err).then((cause) => {
            if (this.applyError === first)
              this.applyError = lmdbUnavailable(this.shardId, opts.dbDir, cause);
          });
        },
      },
      opts.applyDelayMs,
    );
    this.onAppend = opts.onAppend ?? (() => {});
    this.idFilter = new IdFilter(
      (after, limit) => store.idsAfter(after, limit),
      () => this.pending.uncommittedIds(),
      store.stats().records,
      opts.idFilterMinIds,
    );
    this.checkpointer = new Checkpointer(store, wal, {
      shardId: opts.shardId,
      everyRecords: opts.checkpointEveryRecords,
      intervalMs: opts.checkpointIntervalMs,
    });
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
    const pendingState = this.pending;
    if (pendingState.overlaySize + records.length > MAX_OVERLAY_RECORDS) {
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
      // Reused view: everything read from it is read in this iteration.
      const view = scratchAssertionView(bytes);
      const id = view.id() ?? "";
      // Every id held uncommitted or stored is in the filter (add() below, its warm-up and
      // rebuilds), so a "no" skips both the uncommitted map and LMDB.
      const known = this.idFilter.mightContain(id);
      const uncommitted = known ? pendingState.uncommitted(id) : undefined;
      const existing =
        uncommitted !== undefined
          ? uncommitted.lsn
          : known
            ? this.store.assertionLsn(id)
            : undefined;
      if (existing !== undefined) {
        outcome.lsns[i] = existing;
        const writtenActive =
          uncommitted !== undefined
            ? uncommitted.decoded?.active
            : this.store.withAssertion(id, wasWrittenActive);
        outcome.flags[i] =
          writtenActive === false ? WRITE_DUPLICATE | WRITE_STORED_QUARANTINED : WRITE_DUPLICATE;
        // A duplicate of a record not yet durable is acknowledged only with that record.
        if (
          uncommitted !== undefined &&
          pendingState.isUndurable(uncommitted) &&
          existing > waitLsn
        )
          waitLsn = existing;
        continue;
      }
      const lsn = this.wal.nextLsn;
      setViewLsn(view, lsn);
      let appended: number;
      try {
        appended = this.wal.append(WalRecordKind.AssertionInsert, bytes);
      } catch (err) {
        // The caller gets an error for the whole call. Items appended before this one still
        // become durable and are applied (a retry reports them as duplicates), unless their
        // batch fails: then, like any failed batch, they are dropped. The WAL may have failed
        // inside this very append and already taken their LSNs back.
        if (lastLsn > 0) {
          if (lastLsn < this.wal.nextLsn) {
            this.wal.whenDurable(lastLsn, (failure) => {
              if (failure === null) this.applyDurable();
              else this.dropFailedPending();
            });
          } else this.dropFailedPending();
        }
        done(err as Error, null);
        return;
      }
      if (appended !== lsn) throw new Error(`WAL assigned LSN ${appended}, expected ${lsn}`);
      this.onAppend(id, lsn);
      const decoded = assertionFacts(view, id);
      // LMDB may not hold the superseded record yet, so its LSN goes along (apply.ts).
      if (decoded.supersedes !== null) decoded.supersedesLsn = this.lsnOf(decoded.supersedes);
      pendingState.addInsert(id, {
        lsn,
        kind: WalRecordKind.AssertionInsert,
        payload: bytes,
        decoded,
      });
      // After addInsert: a rebuild inside add() takes the uncommitted ids, this one included.
      this.idFilter.add(id);
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

  /** LSN of an assertion held uncommitted or stored, undefined when there is none. */
  private lsnOf(id: string): number | undefined {
    return this.pending.uncommitted(id)?.lsn ?? this.store.assertionLsn(id);
  }

  /** Hands every durable pending entry to LMDB (batched commits) and serves it from memory meanwhile. */
  private applyDurable(): void {
    const batch = this.pending.takeDurable(this.wal.durableLsn);
    if (batch !== null) this.applier.push(batch);
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
    const target = entry.event?.target;
    if (target !== undefined) this.onAppend(target, lsn);
    this.pending.addRecord({ ...entry, lsn }, shadow);
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
    if (this.pending.isInFlight(id)) {
      const payload = this.pending.inFlightPayload(id);
      rec = payload === undefined ? undefined : decodeAssertion(payload);
    } else {
      rec = this.getRecordWithoutStatus(id);
    }
    if (rec === undefined) return undefined;
    const shadow = this.pending.shadowOf(id);
    if (shadow === undefined) return withStatus(rec, statusAsOf(this.store.dbs, rec, LIVE_LSN));
    return withStatus(rec, { status: shadow.status, supersededBy: shadow.supersededBy });
  }

  /**
   * When the target's last status change was made (its event's `at`, ms); MAX_SAFE_INTEGER
   * while LMDB has not committed it (it is recent), 0 when there was none.
   */
  lastStatusChangeAtMs(id: string): number {
    if (this.pending.shadowOf(id) !== undefined) return Number.MAX_SAFE_INTEGER;
    for (const { value } of this.store.dbs.statusLog.getRange({
      start: [id, Number.MAX_SAFE_INTEGER],
      end: [id, -1],
      reverse: true,
      limit: 1,
    }))
      return value.at;
    return 0;
  }

  /** Whether `voter` has a vote on `target` that LMDB has not committed yet. */
  hasUncommittedVote(target: string, voter: string): boolean {
    return this.pending.hasUncommittedVote(target, voter);
  }

  /** Whether a source id exists, durable or in flight. */
  hasSource(id: string): boolean {
    if (this.store.dbs.sources.doesExist(id)) return true;
    return this.pending.hasPendingSource(id);
  }

  /**
   * Resolves when LMDB has committed every acknowledged status change, vote and source, so
   * reads of statuses are current. Bounded: under a steady stream of such writes it gives up
   * after a few commits (the answer is then at most that many commits old).
   */
  async stateBarrier(): Promise<void> {
    for (let i = 0; i < 4 && this.pending.stateBehind; i++) await this.settled();
  }

  /**
   * The LSN a new epoch records for this shard: every record appended before the call, once
   * durable (or, if that flush fails, the durable point, since failed LSNs are reused).
   */
  epochMark(done: (lsn: number) => void): void {
    const target = this.wal.nextLsn - 1;
    this.whenAppendedDurable((err) => done(err === null ? target : this.wal.durableLsn));
  }

  /**
   * Calls back once every record appended so far is durable, or with the flush's error. An
   * answer that relies on state not yet durable (a retried state write taken as a duplicate
   * of one still in flight) waits for it: if that flush fails, the retry must not have been
   * told it succeeded.
   */
  whenAppendedDurable(done: (err: Error | null) => void): void {
    const target = this.wal.nextLsn - 1;
    if (target <= this.wal.durableLsn) {
      done(null);
      return;
    }
    this.wal.whenDurable(target, done);
  }

  /** Records appended to the WAL and not yet durable. */
  get pendingRecords(): number {
    return this.pending.entryCount;
  }

  private getRecordWithoutStatus(id: string): AssertionRecord | undefined {
    const pending = this.pending.overlayPayload(id);
    return pending !== undefined ? decodeAssertion(pending) : this.store.getAssertion(id);
  }

  /** Acknowledged record by id with its live status (call after stateBarrier()). */
  getAssertion(id: string): AssertionRecord | undefined {
    const rec = this.getRecordWithoutStatus(id);
    if (rec === undefined) return undefined;
    const shadow = this.pending.readShadowOf(id);
    if (shadow !== undefined) return withStatus(rec, shadow);
    return withStatus(rec, statusAsOf(this.store.dbs, rec, LIVE_LSN));
  }

  /**
   * Newest active assertion of a concept (call after stateBarrier()). An acknowledged insert
   * LMDB has not committed yet is newer than anything committed, so it wins unless a status
   * change (in flight) took it out.
   */
  latest(concept: string): AssertionRecord | undefined {
    const pending = this.pending.overlayLatestOf(concept);
    if (pending !== undefined) {
      const rec = decodeAssertion(pending);
      const shadow = this.pending.readShadowOf(rec.id);
      if (shadow === undefined || shadow.status === "active") return rec;
    }
    const stored = this.store.latest(concept);
    // A status change LMDB has not committed (only after a failed commit can a read get
    // here with one): the stored answer may be stale, so refuse rather than show it.
    if (stored !== undefined && this.applyError !== null) {
      const shadow = this.pending.readShadowOf(stored.id);
      if (shadow !== undefined && shadow.status !== "active") throw this.applyError;
    }
    return stored;
  }

  /**
   * Resolves once LMDB has committed every applied entry (range reads need that). Never
   * rejects: after a failed commit writes are refused (writeBlocker) but reads keep working
   * on what LMDB holds.
   */
  settled(): Promise<void> {
    return this.applier.settled();
  }

  /**
   * settled() for a read of LMDB alone (ranges: history, lenses, lists): refused once a
   * commit failed, since LMDB then lacks acknowledged records. Point reads use the overlay.
   */
  async settledForRangeRead(): Promise<void> {
    await this.applier.settled();
    if (this.applyError !== null) throw this.applyError;
  }

  /** After a failed batch the WAL reuses the LSNs past its durable point: forget those records. */
  private dropFailedPending(): void {
    const durable = this.wal.durableLsn;
    this.applyDurable();
    this.pending.dropAbove(durable);
  }

  /** Makes LMDB durable up to the applied LSN, then recycles WAL segments behind it. */
  checkpoint(): Promise<number> {
    return this.checkpointer.checkpoint();
  }

  /** Online backup into walDir/dbDir (both empty); see Checkpointer.backup. */
  backup(walDir: string, dbDir: string): Promise<BackupResult> {
    return this.checkpointer.backup(walDir, dbDir);
  }

  get checkpointLsn(): number {
    return this.checkpointer.checkpointLsn;
  }

  async close(): Promise<void> {
    this.checkpointer.stopTimer();
    this.idFilter.close();
    await this.wal.close();
    this.applyDurable();
    await this.applier.settled();
    this.applier.stopTimer();
    await this.checkpointer.idle();
    await this.checkpointer.checkpoint();
    await this.store.close();
  }
}
