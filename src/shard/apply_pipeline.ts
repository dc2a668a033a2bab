// Hands durable WAL entries to LMDB in few, large commits.
//
// Every LMDB commit costs the same fixed work (a write transaction, page writes, and the
// env's fdatasync on lmdb-js's thread) however few records it holds; committing once per
// WAL flush spent that on every flush. Entries stay readable from PendingState's overlay
// until their commit, so committing later changes no answer: only when memory is freed.
// At most two commits are in flight: while lmdb-js's write thread runs one (B-tree inserts,
// page writes, sync), this thread already encodes the puts of the next, so the two overlap
// instead of taking turns (measured: +13-25 % sustained WAL + LMDB records/s on one shard).
// The second commit still waits for `delayMs` or a full batch, so commits stay large. A
// commit starts at the latest `delayMs` after its first entry (at once past a full batch).
// Commits finish in issue order (one lmdb-js write queue); their completions are handled
// in that order too. The backlog is bounded by PendingState's overlay bound (503 beyond it).
import { DEFAULT_APPLY_DELAY_MS, MAX_APPLY_DELAY_MS } from "../domain/limits.js";
import { type ApplyEntry, MAX_APPLY_BATCH_ENTRIES } from "../store/apply.js";
import type { ShardStore } from "../store/shard_store.js";
import type { PendingState } from "./pending_state.js";

/** Commits issued to lmdb-js and not yet finished, at most. */
export const MAX_COMMITS_IN_FLIGHT = 2;

export interface ApplyPipelineHooks {
  /** A commit finished: records, seconds from issue to commit, success. */
  onApplied: (records: number, seconds: number, ok: boolean) => void;
  /** A commit failed or could not be issued: writes must stop (the WAL keeps the records). */
  onError: (err: Error) => void;
}

export class ApplyPipeline {
  private queued: ApplyEntry[][] = [];
  private queuedEntries = 0;
  private inFlightCommits = 0;
  /** Settles once every commit issued so far is handled (null when none is in flight). */
  private lastCommit: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** Highest LSN handed over by push(), and highest whose commit finished (or failed). */
  private pushedLsn = 0;
  private doneLsn = 0;
  private failed = false;
  private readonly issueNow = () => this.issue();

  constructor(
    private readonly store: ShardStore,
    private readonly pending: PendingState,
    private readonly hooks: ApplyPipelineHooks,
    private readonly delayMs: number = DEFAULT_APPLY_DELAY_MS,
  ) {
    if (!Number.isInteger(delayMs) || delayMs < 0 || delayMs > MAX_APPLY_DELAY_MS)
      throw new RangeError(
        `apply delay must be an integer 0..${MAX_APPLY_DELAY_MS} ms, got ${delayMs}`,
      );
  }

  /** Entries just taken from PendingState (durable, in LSN order). */
  push(batch: ApplyEntry[]): void {
    if (batch.length === 0 || this.failed) return;
    const last = (batch[batch.length - 1] as ApplyEntry).lsn;
    if (last <= this.pushedLsn)
      throw new Error(`apply batch LSN ${last} not after ${this.pushedLsn}`);
    this.pushedLsn = last;
    this.queued.push(batch);
    this.queuedEntries += batch.length;
    this.schedule();
  }

  private schedule(): void {
    if (this.inFlightCommits >= MAX_COMMITS_IN_FLIGHT) return; // issued when one finishes
    if (this.delayMs === 0 || this.queuedEntries >= MAX_APPLY_BATCH_ENTRIES) this.issue();
    else if (this.timer === null) this.timer = setTimeout(this.issueNow, this.delayMs);
  }

  /**
   * Resolves once everything pushed before the call is committed (or failed). Later pushes
   * do not extend the wait: the target is fixed at the call, and every round commits at
   * least the oldest queued batch.
   */
  async settled(): Promise<void> {
    const target = this.pushedLsn;
    while (this.doneLsn < target) {
      this.issue();
      const last = this.lastCommit;
      if (last === null) throw new Error(`apply pipeline stalled at LSN ${this.doneLsn}`);
      await last;
    }
    await this.store.settled().catch(() => {});
  }

  /** Stops the timer; pending entries are still issued by settled(). */
  stopTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private issue(): void {
    this.stopTimer();
    if (this.inFlightCommits >= MAX_COMMITS_IN_FLIGHT || this.queued.length === 0 || this.failed)
      return;
    // Whole batches up to MAX_APPLY_BATCH_ENTRIES per commit (at least one batch, itself
    // bounded by the WAL's batch size): the puts run on this thread before the commit, so
    // a backlog is worked off in bounded steps rather than one long stall.
    let take = 0;
    let records = 0;
    while (take < this.queued.length && (take === 0 || records < MAX_APPLY_BATCH_ENTRIES)) {
      records += (this.queued[take] as ApplyEntry[]).length;
      take++;
    }
    const batches = this.queued.slice(0, take);
    this.queued = this.queued.slice(take);
    this.queuedEntries -= records;
    let committed: Promise<void> = Promise.resolve();
    try {
      for (const batch of batches) {
        for (let from = 0; from < batch.length; from += MAX_APPLY_BATCH_ENTRIES)
          committed = this.store.applyBatchAsync(batch.slice(from, from + MAX_APPLY_BATCH_ENTRIES));
      }
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    const lastBatch = batches[batches.length - 1] as ApplyEntry[];
    const lastLsn = (lastBatch[lastBatch.length - 1] as ApplyEntry).lsn;
    const issuedAt = performance.now();
    this.inFlightCommits++;
    const previous = this.lastCommit ?? Promise.resolve();
    const handled: Promise<void> = previous
      .then(() => committed)
      .then(
        () => {
          this.finishCommit(handled, lastLsn);
          this.hooks.onApplied(records, (performance.now() - issuedAt) / 1000, true);
          for (const batch of batches)
            this.pending.committed(batch, (batch[batch.length - 1] as ApplyEntry).lsn);
          if (this.queued.length > 0) this.schedule();
        },
        (err: unknown) => {
          this.finishCommit(handled, lastLsn);
          this.hooks.onApplied(records, (performance.now() - issuedAt) / 1000, false);
          this.fail(err as Error);
        },
      );
    this.lastCommit = handled;
  }

  private finishCommit(handled: Promise<void>, lastLsn: number): void {
    this.inFlightCommits--;
    if (this.inFlightCommits < 0)
      throw new Error("apply pipeline: more commits finished than issued");
    if (lastLsn > this.doneLsn) this.doneLsn = lastLsn;
    if (this.lastCommit === handled) this.lastCommit = null;
  }

  private fail(err: Error): void {
    if (this.failed) return; // a commit issued behind the failed one reports the same failure
    this.failed = true;
    this.stopTimer();
    this.queued = [];
    this.queuedEntries = 0;
    this.doneLsn = this.pushedLsn;
    this.hooks.onError(err);
  }
}
