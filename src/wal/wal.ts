// The per-shard write-ahead log: group commit by natural batching.
//
// `append` frames a record into the filling staging buffer and returns its LSN at once; the
// first append of a synchronous run schedules a flush as a microtask (not an event-loop
// tick). While one batch is being written and synced on a libuv thread, the next one fills.
// `whenDurable(lsn, cb)` fires once that LSN is on stable storage. A failed write or sync
// fails every waiter past the durable LSN and is never retried as if it had succeeded: the
// segment is abandoned and writing resumes in a fresh segment whose header names the LSN
// it starts at (recovery ignores whatever the abandoned segment holds beyond that).
import fs from "node:fs";
import { WalCorruptionError, WalUnavailableError } from "./errors.js";
import { alignUp, RECORD_HEADER_BYTES, writeRecord } from "./format.js";
import { nativeWal, type WalNativeError, type WalWriteResult } from "./native.js";
import { type RecoveryResult, recoverWal, type SegmentInfo } from "./recovery.js";
import {
  closeRetiredSegment,
  type LiveSegment,
  removeLeftoverTemps,
  reopenTail,
  type SyncMode,
} from "./segment_files.js";
import { SegmentSet } from "./segment_set.js";
import { type DurableCallback, DurableWaiters } from "./waiters.js";
import {
  resolveWalOptions,
  type WalFlushMode,
  type WalObserver,
  type WalOptions,
} from "./wal_options.js";

export type { WalFlushMode, WalObserver, WalOptions } from "./wal_options.js";

export class Wal {
  readonly shardId: number;
  readonly dir: string;
  readonly segmentSizeBytes: number;
  readonly maxBatchBytes: number;
  readonly maxBatchRecords: number;
  /** Largest payload one record may carry in this log (bounded by the batch size). */
  readonly maxPayloadBytes: number;
  readonly mode: SyncMode;
  readonly recovery: RecoveryResult;

  private readonly observer: WalObserver;
  private readonly baseRetryDelayMs: number;
  private readonly maxRetryDelayMs: number;
  private retryDelayMs: number;
  /** Written segments and spares (segment_set.ts); `tail` is the live one, if any. */
  private readonly segmentSet: SegmentSet;
  private tail: LiveSegment | null;

  private fillBuf: Buffer;
  private flushBuf: Buffer;
  private fillBytes = 0;
  private fillRecords = 0;
  private fillFirstLsn: number;
  private flushScheduled = false;
  private inflight = false;
  private flushLastLsn = 0;
  private flushRecords = 0;
  private flushWriteBytes = 0;
  private flushStartNs = 0n;
  private waitingForSpare = false;

  private _nextLsn: number;
  private _durableLsn: number;
  private failure: WalUnavailableError | null = null;
  private closed = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private closeWaiters: Array<() => void> = [];

  private readonly waiters = new DurableWaiters();

  private readonly onWriteDone = (err: WalNativeError | null, res: WalWriteResult | null) =>
    this.finishWrite(err, res);
  private readonly flushMode: WalFlushMode;
  /** An inline flush's outcome, delivered from a microtask like a pool flush's callback. */
  private inlineError: WalNativeError | null = null;
  private inlineResult: WalWriteResult | null = null;
  private readonly finishInline = () => this.finishWrite(this.inlineError, this.inlineResult);
  private readonly runScheduledFlush = () => {
    this.flushScheduled = false;
    this.flush();
  };

  static async open(opts: WalOptions): Promise<Wal> {
    fs.mkdirSync(opts.dir, { recursive: true });
    removeLeftoverTemps(opts.dir);
    const recovery = recoverWal({
      dir: opts.dir,
      shardId: opts.shardId,
      checkpointLsn: opts.checkpointLsn,
      repair: opts.repair ?? false,
      onRecord: opts.onRecord,
    });
    const wal = new Wal(opts, recovery);
    await wal.ensureSpareReady();
    if (wal.tail === null && wal.failure === null) {
      // Start the first segment now, and its successor's spare, so that no zero-fill runs
      // under the first writes.
      await new Promise<void>((resolve) => wal.rotate(resolve));
      await wal.ensureSpareReady();
    }
    return wal;
  }

  private constructor(opts: WalOptions, recovery: RecoveryResult) {
    const o = resolveWalOptions(opts);
    this.shardId = opts.shardId;
    this.dir = opts.dir;
    this.segmentSizeBytes = o.segmentSizeBytes;
    this.maxBatchBytes = o.maxBatchBytes;
    this.maxPayloadBytes = o.maxPayloadBytes;
    this.maxBatchRecords = o.maxBatchRecords;
    const observer = o.observer;
    this.observer = observer;
    this.flushMode = o.flushMode;
    this.baseRetryDelayMs = o.retryDelayMs;
    this.retryDelayMs = o.retryDelayMs;
    this.maxRetryDelayMs = o.maxRetryDelayMs;
    this.recovery = recovery;
    this.fillBuf = nativeWal.allocAligned(this.maxBatchBytes);
    this.flushBuf = nativeWal.allocAligned(this.maxBatchBytes);

    this.segmentSet = new SegmentSet(
      {
        dir: opts.dir,
        shardId: opts.shardId,
        segmentSizeBytes: o.segmentSizeBytes,
        maxSpares: o.maxSpares,
        archiveDir: o.archiveDir,
      },
      recovery.segments,
      {
        onSegments: (count, bytes) => observer.onSegments(count, bytes),
        onError: (code) => observer.onError(code),
        onSpareSettled: () => this.onSpareSettled(),
      },
    );

    if (recovery.nextLsn <= opts.checkpointLsn) {
      if (!(opts.repair ?? false)) {
        const last = this.segmentSet.last;
        throw new WalCorruptionError(
          opts.shardId,
          last?.path ?? opts.dir,
          0,
          `the store has applied LSN ${opts.checkpointLsn} but the log ends at LSN ${recovery.nextLsn - 1}`,
        );
      }
      recovery.nextLsn = opts.checkpointLsn + 1;
      recovery.tailWriteOffsetBytes = null; // continue in a fresh segment
    }
    this._nextLsn = recovery.nextLsn;
    this._durableLsn = recovery.nextLsn - 1;
    this.fillFirstLsn = this._nextLsn;

    const lastInfo = this.segmentSet.last;
    if (lastInfo !== undefined && recovery.tailWriteOffsetBytes !== null) {
      this.tail = reopenTail(lastInfo, recovery.tailWriteOffsetBytes, o.direct, o.dsync);
      this.mode = { direct: this.tail.handle.direct, dsync: o.dsync };
    } else {
      this.mode = { direct: o.direct, dsync: o.dsync };
      this.tail = null;
    }
    this.segmentSet.report();
  }

  get nextLsn(): number {
    return this._nextLsn;
  }
  get durableLsn(): number {
    return this._durableLsn;
  }
  get ioMode(): "direct" | "buffered" {
    return this.mode.direct ? "direct" : "buffered";
  }
  get segmentCount(): number {
    return this.segmentSet.count;
  }
  get unavailable(): WalUnavailableError | null {
    return this.failure;
  }
  /** Bytes of framed records waiting for the next flush (for admission control). */
  get pendingBytes(): number {
    return this.fillBytes;
  }

  /** True when records totalling framedBytes (headers included) can be appended now. */
  canAppendBatch(framedBytes: number, records: number): boolean {
    if (this.failure !== null || this.closed) return false;
    const freeNow = this.maxBatchBytes - this.fillBytes;
    if (framedBytes <= freeNow && this.fillRecords + records <= this.maxBatchRecords) return true;
    // While nothing is in flight the filling buffer can be flushed and a fresh one started.
    return (
      !this.inflight &&
      framedBytes <= this.maxBatchBytes + freeNow &&
      records <= this.maxBatchRecords
    );
  }

  /** Frames one record for the next flush and returns its LSN. Throws WalUnavailableError. */
  append(kind: number, payload: Uint8Array): number {
    if (this.closed) throw new WalUnavailableError("closed", "the WAL is closed");
    if (this.failure !== null) throw this.failure;
    if (payload.byteLength > this.maxPayloadBytes) {
      throw new RangeError(
        `record payload of ${payload.byteLength} bytes exceeds ${this.maxPayloadBytes}`,
      );
    }
    const need = RECORD_HEADER_BYTES + payload.byteLength;
    if (this.fillBytes + need > this.maxBatchBytes || this.fillRecords >= this.maxBatchRecords) {
      if (this.inflight) {
        throw new WalUnavailableError(
          "backpressure",
          "the WAL batch buffers are full; retry shortly",
        );
      }
      this.flush(); // swaps buffers synchronously, so the record fits in the fresh one
      if (this.failure !== null) throw this.failure;
      if (this.fillBytes + need > this.maxBatchBytes) {
        throw new WalUnavailableError("backpressure", "the WAL is rotating; retry shortly");
      }
    }
    const lsn = this._nextLsn;
    writeRecord(this.fillBuf, this.fillBytes, kind, lsn, this.fillFirstLsn, payload);
    this.fillBytes += need;
    this.fillRecords++;
    this._nextLsn = lsn + 1;
    if (!this.flushScheduled && !this.inflight) {
      this.flushScheduled = true;
      // Inline: after this loop iteration's other messages (setImmediate), so they join the batch.
      if (this.flushMode === "inline") setImmediate(this.runScheduledFlush);
      else queueMicrotask(this.runScheduledFlush);
    }
    return lsn;
  }

  /** cb(null) once `lsn` is durable, or cb(err) if its batch failed. May call back synchronously. */
  whenDurable(lsn: number, cb: DurableCallback): void {
    if (lsn <= this._durableLsn) {
      cb(null);
      return;
    }
    if (lsn >= this._nextLsn) throw new RangeError(`LSN ${lsn} has not been appended`);
    this.waiters.add(lsn, cb);
  }

  durable(lsn: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.whenDurable(lsn, (err) => (err === null ? resolve() : reject(err)));
    });
  }

  /**
   * Recycles (or deletes, past maxSpares) every closed segment but the newest whose records
   * are all <= checkpointLsn; with an archive directory each one is first copied there
   * durably (segment_set.ts).
   */
  releaseUpTo(checkpointLsn: number): Promise<number> {
    return this.segmentSet.releaseUpTo(checkpointLsn, () => this.tail?.seq ?? null);
  }

  segmentsInfo(): SegmentInfo[] {
    return this.segmentSet.info(this.tail);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    if (this.fillBytes > 0 && this.failure === null) this.flush();
    while (this.inflight || this.fillBytes > 0) {
      if (this.failure !== null) break;
      await new Promise<void>((resolve) => this.closeWaiters.push(resolve));
    }
    while (this.segmentSet.spareCreating) {
      await new Promise<void>((resolve) => this.closeWaiters.push(resolve));
    }
    this.closed = true;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    if (this.tail !== null) nativeWal.close(this.tail.handle);
    this.tail = null;
  }

  private flush(): void {
    if (this.inflight || this.fillBytes === 0 || this.failure !== null) return;
    const writeBytes = alignUp(this.fillBytes);
    const tail = this.tail;
    if (tail === null || tail.writeOffsetBytes + writeBytes > tail.sizeBytes) {
      this.rotate();
      return;
    }
    const buf = this.fillBuf;
    buf.fill(0, this.fillBytes, writeBytes);
    this.fillBuf = this.flushBuf;
    this.flushBuf = buf;
    this.flushLastLsn = this._nextLsn - 1;
    this.flushRecords = this.fillRecords;
    this.flushWriteBytes = writeBytes;
    this.fillBytes = 0;
    this.fillRecords = 0;
    this.fillFirstLsn = this._nextLsn;
    this.inflight = true;
    this.flushStartNs = process.hrtime.bigint();
    if (this.flushMode === "inline") {
      this.inlineError = null;
      this.inlineResult = null;
      try {
        this.inlineResult = nativeWal.writeAndSyncBlocking(
          tail.handle,
          buf,
          0,
          writeBytes,
          tail.writeOffsetBytes,
        );
      } catch (err) {
        this.inlineError = err as WalNativeError;
      }
      // Never call back inside flush(): callers (append) may be in the middle of a batch.
      queueMicrotask(this.finishInline);
      return;
    }
    nativeWal.writeAndSync(
      tail.handle,
      buf,
      0,
      writeBytes,
      tail.writeOffsetBytes,
      this.onWriteDone,
    );
  }

  private finishWrite(err: WalNativeError | null, res: WalWriteResult | null): void {
    this.inflight = false;
    const tail = this.tail;
    if (err !== null || res === null || tail === null) {
      this.fail(err ?? new Error("write finished without a result"));
      return;
    }
    tail.writeOffsetBytes += this.flushWriteBytes;
    tail.lastLsn = this.flushLastLsn;
    this._durableLsn = this.flushLastLsn;
    const flushNs = Number(process.hrtime.bigint() - this.flushStartNs);
    this.observer.onFlush(
      this.flushRecords,
      this.flushWriteBytes,
      res.writeNs,
      res.syncNs,
      flushNs,
    );
    this.retryDelayMs = this.baseRetryDelayMs;
    this.waiters.release(this._durableLsn);
    if (this.fillBytes > 0) this.flush();
    else this.wakeClosers();
  }

  private fail(cause: Error): void {
    const code = (cause as Partial<WalNativeError>).code ?? "EIO";
    const reason = code === "ENOSPC" || code === "EDQUOT" ? "disk_full" : "io_error";
    this.failure = new WalUnavailableError(
      reason,
      `WAL of shard ${this.shardId} refused writes after ${code}: ${cause.message}`,
      code,
    );
    this.observer.onError(code);
    // Everything not yet durable is failed; the filling batch is discarded and its LSNs reused.
    this.fillBytes = 0;
    this.fillRecords = 0;
    this._nextLsn = this._durableLsn + 1;
    this.fillFirstLsn = this._nextLsn;
    this.waiters.failAll(this.failure);
    if (this.tail !== null) {
      // Abandon the segment: the next one starts at the first LSN that was not acknowledged.
      this.segmentSet.remember(this.tail);
      closeRetiredSegment(this.tail.handle);
      this.tail = null;
    }
    this.wakeClosers();
    this.scheduleResume();
  }

  private scheduleResume(): void {
    if (this.closed || this.retryTimer !== null) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.segmentSet.clearSpareError();
      this.ensureSpare();
      if (this.segmentSet.spareCount > 0) {
        this.failure = null;
        return;
      }
      this.retryDelayMs = Math.min(this.retryDelayMs * 2, this.maxRetryDelayMs);
      this.scheduleResume();
    }, this.retryDelayMs);
    this.retryTimer.unref();
  }

  private rotate(onActive?: () => void): void {
    if (this.segmentSet.spareCount === 0) {
      if (onActive !== undefined) {
        onActive(); // at open: writes will rotate once a spare exists
        return;
      }
      const spareError = this.segmentSet.spareError;
      if (spareError !== null) {
        this.fail(spareError);
        return;
      }
      this.waitingForSpare = true;
      this.ensureSpare();
      return;
    }
    // Before activating: a failure may call back synchronously, and it clears this.
    this.inflight = true;
    const previous = this.tail;
    const seq = previous !== null ? previous.seq + 1 : this.segmentSet.lastSeq() + 1;
    this.segmentSet.activateNext(seq, this.fillFirstLsn, this.mode, (err, segment) => {
      this.inflight = false;
      if (err !== null || segment === null) {
        this.fail(err ?? new Error("segment activation failed"));
        onActive?.();
        return;
      }
      if (previous !== null) {
        this.segmentSet.remember(previous);
        closeRetiredSegment(previous.handle);
      }
      this.tail = segment;
      this.segmentSet.add(segment);
      this.observer.onRotate();
      this.segmentSet.report();
      this.ensureSpare();
      onActive?.();
      this.flush();
    });
  }

  private ensureSpare(): void {
    if (!this.closed) this.segmentSet.ensureSpare(this.mode);
  }

  /** A background spare creation finished (segment_set.ts). */
  private onSpareSettled(): void {
    this.wakeClosers();
    if (this.waitingForSpare) {
      this.waitingForSpare = false;
      if (this.fillBytes > 0) this.flush();
    }
  }

  private ensureSpareReady(): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const spareError = this.segmentSet.spareError;
        if (this.segmentSet.spareCount > 0) return resolve();
        if (spareError !== null) {
          // A store that cannot make a spare still opens: writes fail until space returns.
          this.failure = new WalUnavailableError(
            "disk_full",
            `cannot preallocate a WAL segment: ${spareError.message}`,
          );
          this.scheduleResume();
          return resolve();
        }
        if (!this.segmentSet.spareCreating) this.ensureSpare();
        this.closeWaiters.push(check);
      };
      try {
        check();
      } catch (err) {
        reject(err);
      }
    });
  }

  private wakeClosers(): void {
    const waiters = this.closeWaiters;
    this.closeWaiters = [];
    for (const w of waiters) w();
  }
}
