// The segment files of one WAL: the segments it has written, oldest first (the last one is
// the live tail while Wal writes to it), and the spares waiting to become the next one. Here
// is the work that moves files between those states: zero-filled spares made in the
// background, activation of a spare as the next segment, recycling (or archiving, then
// recycling) segments behind a checkpoint. Wal owns writing and group commit and asks this
// module for the next segment; the file operations themselves are in segment_files.ts.
import assert from "node:assert/strict";
import fs from "node:fs";
import { BLOCK_SIZE_BYTES } from "./format.js";
import { nativeWal, type WalNativeError } from "./native.js";
import type { SegmentInfo } from "./recovery.js";
import {
  activateSpare,
  archiveSegment,
  createZeroSpare,
  type LiveSegment,
  listSpares,
  recycleSegment,
  type Spare,
  type SyncMode,
} from "./segment_files.js";

export interface SegmentSetOptions {
  dir: string;
  shardId: number;
  segmentSizeBytes: number;
  /** Spares kept at most; a released segment beyond them is deleted. */
  maxSpares: number;
  /** Segments behind a checkpoint are copied here (fsynced) before they are recycled. */
  archiveDir: string | null;
}

export interface SegmentSetEvents {
  onSegments(count: number, bytes: number): void;
  onError(code: string): void;
  /** A background spare creation finished: a spare was added, or spareError is set. */
  onSpareSettled(): void;
}

export class SegmentSet {
  private readonly segments: SegmentInfo[];
  private readonly spares: Spare[];
  private creating = false;
  private lastSpareError: Error | null = null;
  /** The aligned block a segment header is written from. */
  private readonly headerBuf: Buffer;

  constructor(
    private readonly opts: SegmentSetOptions,
    recovered: ReadonlyArray<SegmentInfo>,
    private readonly events: SegmentSetEvents,
  ) {
    this.segments = recovered.slice();
    this.spares = listSpares(opts.dir, opts.segmentSizeBytes);
    this.headerBuf = nativeWal.allocAligned(BLOCK_SIZE_BYTES);
  }

  get count(): number {
    return this.segments.length;
  }

  /** The newest segment (the tail, when one is live). */
  get last(): SegmentInfo | undefined {
    return this.segments[this.segments.length - 1];
  }

  get spareCount(): number {
    return this.spares.length;
  }

  /** Whether a spare is being zero-filled right now. */
  get spareCreating(): boolean {
    return this.creating;
  }

  /** Why the last spare could not be made (null once one was, or after clearSpareError). */
  get spareError(): Error | null {
    return this.lastSpareError;
  }

  clearSpareError(): void {
    this.lastSpareError = null;
  }

  /** Starts zero-filling a spare in the background unless one exists or is being made. */
  ensureSpare(mode: SyncMode): void {
    if (this.creating || this.spares.length > 0) return;
    this.creating = true;
    createZeroSpare(this.opts.dir, this.opts.segmentSizeBytes, mode, (err, spare) => {
      this.creating = false;
      if (err !== null || spare === null) {
        this.lastSpareError = err ?? new Error("spare creation failed");
        this.events.onError((err as Partial<WalNativeError> | null)?.code ?? "EIO");
      } else {
        this.lastSpareError = null;
        this.spares.push(spare);
      }
      this.events.onSpareSettled();
    });
  }

  /**
   * Turns the oldest spare into segment `seq` starting at `firstLsn` (header written and
   * synced). There must be a spare (spareCount > 0). `done` may run synchronously (a failed
   * open); the caller adds the segment once it is live.
   */
  activateNext(
    seq: number,
    firstLsn: number,
    mode: SyncMode,
    done: (err: Error | null, segment: LiveSegment | null) => void,
  ): void {
    const spare = this.spares.shift();
    assert.ok(spare !== undefined, "activateNext without a spare");
    activateSpare(
      this.opts.dir,
      spare,
      { shardId: this.opts.shardId, seq, firstLsn, segmentSizeBytes: this.opts.segmentSizeBytes },
      this.headerBuf,
      mode,
      done,
    );
  }

  /** Records a newly live segment as the newest one. */
  add(segment: LiveSegment): void {
    this.segments.push({
      seq: segment.seq,
      path: segment.path,
      firstLsn: segment.firstLsn,
      lastLsn: segment.lastLsn,
      sizeBytes: segment.sizeBytes,
    });
  }

  /** Copies the live tail's last LSN into its entry (or adds the entry) before it retires. */
  remember(tail: LiveSegment): void {
    const existing = this.segments.find((s) => s.seq === tail.seq);
    if (existing !== undefined) existing.lastLsn = tail.lastLsn;
    else this.add(tail);
  }

  lastSeq(): number {
    return this.last?.seq ?? 0;
  }

  /**
   * Recycles (or deletes, past maxSpares) every segment but the live tail whose records are
   * all <= checkpointLsn; with an archive directory each one is first copied there durably.
   * The newest segment always stays, even with no live tail (closed, or abandoned after a
   * failure): the next segment's seq continues from it after a restart, so seqs never repeat
   * (an archive keyed by seq would otherwise be overwritten). `tailSeq` is asked again for
   * every segment: archiving awaits, and a new tail may go live meanwhile.
   */
  async releaseUpTo(checkpointLsn: number, tailSeq: () => number | null): Promise<number> {
    let released = 0;
    while (this.segments.length > 1) {
      const first = this.segments[0] as SegmentInfo;
      if (first.seq === tailSeq()) break;
      if (first.lastLsn > checkpointLsn) break;
      if (this.opts.archiveDir !== null) await archiveSegment(this.opts.archiveDir, first.path);
      if (this.segments[0] !== first) break; // changed while archiving: look again next time
      if (this.spares.length < this.opts.maxSpares) {
        this.spares.push(recycleSegment(this.opts.dir, first.path));
      } else {
        fs.unlinkSync(first.path);
        nativeWal.fsyncDir(this.opts.dir);
      }
      this.segments.shift();
      released++;
    }
    if (released > 0) this.report();
    return released;
  }

  /** A copy of every segment's info, the live tail's with its current last LSN. */
  info(tail: LiveSegment | null): SegmentInfo[] {
    return this.segments.map((s) =>
      tail !== null && s.seq === tail.seq ? { ...s, lastLsn: tail.lastLsn } : { ...s },
    );
  }

  /** Tells the observer how many segments exist and the bytes they and the spares hold. */
  report(): void {
    const count = this.segments.length;
    this.events.onSegments(count, (count + this.spares.length) * this.opts.segmentSizeBytes);
  }
}
