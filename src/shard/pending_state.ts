// What one shard holds in memory between a WAL append and the LMDB commit of that record:
// appended-not-durable entries (deduplication and the apply queue), the read-your-writes
// overlay of acknowledged assertions LMDB has not committed, the status shadow of in-flight
// status changes and the uncommitted votes. ShardCore owns one and drives it; keeping the
// bookkeeping here leaves ShardCore with the write/apply pipeline only.
//
// Everything is keyed by LSN so a commit (or a failed flush that makes the WAL reuse LSNs)
// removes exactly the entries it covers and never a newer write to the same key.

import type { ApplyEntry } from "../store/apply.js";
import type { AssertionStatusName } from "../store/assertion_codec.js";

/** A target's status after a status change LMDB has not committed yet. */
export interface StatusShadow {
  status: AssertionStatusName;
  supersededBy: string | null;
  lsn: number;
}

export class PendingState {
  /**
   * Every assertion appended and not yet committed in LMDB, by id: one map for both stages
   * (one lookup per write, no move between maps when a flush becomes durable). An entry
   * whose LSN is above `takenLsn` is in flight (not durable: a duplicate of it waits for
   * it); at or below, it is acknowledged and reads are served from here until LMDB commits.
   */
  private readonly assertions = new Map<string, ApplyEntry>();
  /** Highest LSN takeDurable handed out: the in-flight / acknowledged boundary. */
  private takenLsn: number;
  /** Appended, not yet durable, in LSN order. */
  private entries: ApplyEntry[] = [];
  /** Acknowledged active inserts LMDB has not committed: concept -> newest payload. */
  private readonly overlayLatest = new Map<string, Uint8Array>();
  /**
   * Status changes appended but not yet committed in LMDB (target id -> status after it), so
   * the checks of later events see them (a second supersession of the same claim is a 409).
   */
  private readonly statusShadow = new Map<string, StatusShadow>();
  /**
   * The same, for reads: only changes that are durable (acknowledged), set when they leave
   * the in-flight queue. A read must never show a change a crash or failed fsync could undo.
   */
  private readonly readShadow = new Map<string, StatusShadow>();
  /** Shadows of appended entries, by LSN, until they become durable (or are dropped). */
  private readonly shadowAtLsn = new Map<number, { target: string; shadow: StatusShadow }>();
  /** Sources applied to LMDB and not committed yet: id -> LSN (first registration wins). */
  private readonly uncommittedSources = new Map<string, number>();
  /** target + "\n" + voter -> LSN of votes LMDB has not committed yet. */
  private readonly uncommittedVotes = new Map<string, number>();
  /** Highest LSN of a status change, vote or source handed to LMDB; reads wait for it. */
  private stateAppliedLsn = 0;
  /** Highest LSN LMDB has committed. */
  private committedLsn: number;

  constructor(committedLsn: number) {
    this.committedLsn = committedLsn;
    this.takenLsn = committedLsn;
  }

  /** Assertions appended and not committed in LMDB (bounded by the caller). */
  get overlaySize(): number {
    return this.assertions.size;
  }

  /** Records appended to the WAL and not yet durable. */
  get entryCount(): number {
    return this.entries.length;
  }

  /** Whether LMDB still lags behind an acknowledged status change, vote or source. */
  get stateBehind(): boolean {
    return this.committedLsn < this.stateAppliedLsn;
  }

  /** The assertion appended and not yet committed in LMDB under this id, in flight or not. */
  uncommitted(id: string): ApplyEntry | undefined {
    return this.assertions.get(id);
  }

  /** Ids of every assertion appended and not yet committed in LMDB. */
  uncommittedIds(): IterableIterator<string> {
    return this.assertions.keys();
  }

  /** Whether an entry from uncommitted() is still waiting for its flush. */
  isUndurable(entry: ApplyEntry): boolean {
    return entry.lsn > this.takenLsn;
  }

  /** Payload of an assertion appended and not yet durable (undefined if not in flight). */
  inFlightPayload(id: string): Uint8Array | undefined {
    const e = this.assertions.get(id);
    return e !== undefined && e.lsn > this.takenLsn ? e.payload : undefined;
  }

  isInFlight(id: string): boolean {
    const e = this.assertions.get(id);
    return e !== undefined && e.lsn > this.takenLsn;
  }

  /** Payload of an acknowledged assertion LMDB has not committed yet. */
  overlayPayload(id: string): Uint8Array | undefined {
    const e = this.assertions.get(id);
    return e !== undefined && e.lsn <= this.takenLsn ? e.payload : undefined;
  }

  /** Newest acknowledged active insert of `concept` LMDB has not committed yet. */
  overlayLatestOf(concept: string): Uint8Array | undefined {
    return this.overlayLatest.get(concept);
  }

  /** The target's status after changes appended so far (for the rules' checks). */
  shadowOf(id: string): StatusShadow | undefined {
    return this.statusShadow.get(id);
  }

  /** The target's status after durable changes LMDB has not committed yet (for reads). */
  readShadowOf(id: string): StatusShadow | undefined {
    return this.readShadow.get(id);
  }

  hasUncommittedVote(target: string, voter: string): boolean {
    return this.uncommittedVotes.has(`${target}\n${voter}`);
  }

  /** Whether a source record with this id is appended and LMDB has not committed it yet. */
  hasPendingSource(id: string): boolean {
    return this.uncommittedSources.has(id) || this.entries.some((e) => e.source?.id === id);
  }

  /** Tracks an assertion just appended (entry.decoded set; its supersession shadows the target). */
  addInsert(id: string, entry: ApplyEntry): void {
    this.assertions.set(id, entry);
    const supersedes = entry.decoded?.supersedes ?? null;
    if (supersedes !== null) {
      const shadow: StatusShadow = { status: "superseded", supersededBy: id, lsn: entry.lsn };
      this.statusShadow.set(supersedes, shadow);
      this.shadowAtLsn.set(entry.lsn, { target: supersedes, shadow });
    }
    this.entries.push(entry);
  }

  /** Tracks a state event or source just appended; `shadow` is the target's status after it. */
  addRecord(
    entry: ApplyEntry,
    shadow: { target: string; status: AssertionStatusName; supersededBy: string | null } | null,
  ): void {
    const lsn = entry.lsn;
    if (shadow !== null) {
      const s: StatusShadow = { status: shadow.status, supersededBy: shadow.supersededBy, lsn };
      this.statusShadow.set(shadow.target, s);
      this.shadowAtLsn.set(lsn, { target: shadow.target, shadow: s });
    }
    if (entry.event?.k === "vote") {
      this.uncommittedVotes.set(`${entry.event.target}\n${entry.event.actor}`, lsn);
    }
    this.entries.push(entry);
  }

  /**
   * Removes the entries at or below `durable` from the in-flight queue and serves their
   * assertions from the overlay; returns them in LSN order, or null when none is durable.
   */
  takeDurable(durable: number): ApplyEntry[] | null {
    const entries = this.entries;
    let n = 0;
    while (n < entries.length && (entries[n] as ApplyEntry).lsn <= durable) n++;
    if (n === 0) return null;
    const batch = n === entries.length ? entries : entries.slice(0, n);
    this.entries = n === entries.length ? [] : entries.slice(n);
    this.takenLsn = (batch[n - 1] as ApplyEntry).lsn;
    for (let i = 0; i < n; i++) {
      const entry = batch[i] as ApplyEntry;
      const d = entry.decoded;
      if (d === undefined || d.supersedes !== null) {
        this.stateAppliedLsn = entry.lsn;
        const sh = this.shadowAtLsn.get(entry.lsn);
        if (sh !== undefined) {
          this.shadowAtLsn.delete(entry.lsn);
          this.readShadow.set(sh.target, sh.shadow);
        }
        if (entry.source !== undefined) this.uncommittedSources.set(entry.source.id, entry.lsn);
      }
      if (d?.active) this.overlayLatest.set(d.concept, entry.payload);
    }
    return batch;
  }

  /** LMDB committed `batch` (from takeDurable): forget what it covers, unless rewritten since. */
  committed(batch: ReadonlyArray<ApplyEntry>, lastLsn: number): void {
    if (lastLsn > this.committedLsn) this.committedLsn = lastLsn;
    for (let i = 0; i < batch.length; i++) {
      const entry = batch[i] as ApplyEntry;
      const target = entry.event?.target ?? entry.decoded?.supersedes ?? null;
      if (target !== null) {
        if (this.statusShadow.get(target)?.lsn === entry.lsn) this.statusShadow.delete(target);
        if (this.readShadow.get(target)?.lsn === entry.lsn) this.readShadow.delete(target);
      }
      if (entry.source !== undefined && this.uncommittedSources.get(entry.source.id) === entry.lsn)
        this.uncommittedSources.delete(entry.source.id);
      if (entry.event?.k === "vote") {
        const key = `${entry.event.target}\n${entry.event.actor}`;
        if (this.uncommittedVotes.get(key) === entry.lsn) this.uncommittedVotes.delete(key);
      }
      const d = entry.decoded;
      if (d === undefined) continue;
      if (this.assertions.get(d.id) === entry) this.assertions.delete(d.id);
      // Only active inserts enter overlayLatest (takeDurable).
      if (d.active && this.overlayLatest.get(d.concept) === entry.payload)
        this.overlayLatest.delete(d.concept);
    }
  }

  /**
   * After a failed flush the WAL reuses the LSNs past `durable`: forget every entry above it
   * (call after the durable ones were taken).
   */
  dropAbove(durable: number): void {
    const keep = this.entries.filter((e) => e.lsn <= durable);
    for (let i = keep.length; i < this.entries.length; i++) {
      const e = this.entries[i] as ApplyEntry;
      if (e.decoded !== undefined && this.assertions.get(e.decoded.id) === e)
        this.assertions.delete(e.decoded.id);
    }
    this.entries = keep;
    // A check shadow from a dropped write falls back to the durable one it replaced.
    for (const [target, shadow] of this.statusShadow) {
      if (shadow.lsn <= durable) continue;
      const durableShadow = this.readShadow.get(target);
      if (durableShadow === undefined) this.statusShadow.delete(target);
      else this.statusShadow.set(target, durableShadow);
    }
    for (const lsn of this.shadowAtLsn.keys()) {
      if (lsn > durable) this.shadowAtLsn.delete(lsn);
    }
    for (const [key, lsn] of this.uncommittedVotes) {
      if (lsn > durable) this.uncommittedVotes.delete(key);
    }
  }
}
