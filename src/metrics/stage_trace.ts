// Opt-in timestamps of every stage of a write request (STEMEDB_STAGE_TRACE=<requests>): the
// main thread and the shard thread each stamp the moments a write passes, and the summary
// says where its time went (queueing, thread hand-offs, the flush, the answer). Off by
// default; when on, a fixed ring of the most recent requests, allocated once.
import { performance } from "node:perf_hooks";

/** The moments a write request passes, in order; the stages are the gaps between them. */
export const WRITE_STAMPS = [
  "received", // the router's handler starts (headers read)
  "body_read", // the whole body is in
  "queued", // the shard handle has it (parsed, checked, encoded, id derived)
  "sent", // its batch message is posted to the shard
  "shard_received", // the shard thread's message handler runs
  "flush_started", // the WAL flush that made it durable starts
  "flush_ended", // the shard thread has that flush's result (inline: fdatasync returned)
  "ack_posted", // the shard posts the answer
  "ack_received", // the main thread handles the answer
  "handler_done", // the router has the reply
  "response_written", // uWS has written it to the socket
] as const;
export type WriteStamp = (typeof WRITE_STAMPS)[number];

const STAMP_INDEX = Object.fromEntries(WRITE_STAMPS.map((s, i) => [s, i + 1])) as Record<
  WriteStamp,
  number
>;
/** Column 0 holds the request's sequence number (a ring slot is reused by later requests). */
const ROW_WIDTH = WRITE_STAMPS.length + 1;
/** The shard's four stamps travel back in its answer, in this order. */
export const SHARD_STAMPS = [
  "shard_received",
  "flush_started",
  "flush_ended",
  "ack_posted",
] as const;
export const MAX_STAGE_TRACE_REQUESTS = 1_000_000;
const CALIBRATION_TRIES = 32;

/**
 * This thread's `performance.now()` zero on the process-wide monotonic clock, in ms. (Not
 * `performance.timeOrigin`: each thread samples the wall clock for it, and a clock step
 * between two threads' starts would shift every stamp of one against the other.)
 */
export function monotonicZeroMs(): number {
  // Bracket the monotonic reading between two performance.now() readings and keep the
  // tightest of a few tries: a thread preempted between the calls would skew every stamp.
  let bestSpanMs = Number.POSITIVE_INFINITY;
  let zeroMs = 0;
  for (let i = 0; i < CALIBRATION_TRIES; i++) {
    const beforeMs = performance.now();
    const monotonicMs = Number(process.hrtime.bigint()) / 1e6;
    const afterMs = performance.now();
    if (afterMs - beforeMs < bestSpanMs) {
      bestSpanMs = afterMs - beforeMs;
      zeroMs = monotonicMs - (beforeMs + afterMs) / 2;
    }
  }
  return zeroMs;
}

/** Reads the main thread's `performance.now()` from another thread. */
export function mainThreadClock(mainZeroMs: number): () => number {
  const offsetMs = monotonicZeroMs() - mainZeroMs;
  return () => performance.now() + offsetMs;
}

export interface StageStats {
  stage: string;
  count: number;
  /** Below 0 only for stamps out of order. */
  min_us: number;
  mean_us: number;
  p50_us: number;
  p99_us: number;
  max_us: number;
}

export interface StageSummary {
  /** Requests with every stamp (the ring keeps the most recent `capacity`). */
  requests: number;
  /** Complete requests whose stamps are out of order (clock skew between threads). */
  out_of_order: number;
  stages: StageStats[];
}

export class StageTrace {
  /** The main thread's monotonicZeroMs(): shard threads stamp on its clock (mainThreadClock). */
  readonly originMs = monotonicZeroMs();
  private readonly rows: Float64Array;
  private nextSeq = 1;

  constructor(readonly capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 1 || capacity > MAX_STAGE_TRACE_REQUESTS)
      throw new RangeError(`stage trace capacity must be 1..${MAX_STAGE_TRACE_REQUESTS}`);
    this.rows = new Float64Array(capacity * ROW_WIDTH);
  }

  /**
   * Starts a request's row (`receivedMs`: when its handler started, performance.now());
   * returns its sequence number, the handle for later stamps.
   */
  begin(receivedMs: number): number {
    const seq = this.nextSeq++;
    const at = ((seq - 1) % this.capacity) * ROW_WIDTH;
    this.rows.fill(0, at, at + ROW_WIDTH);
    this.rows[at] = seq;
    this.rows[at + STAMP_INDEX.received] = receivedMs;
    return seq;
  }

  stamp(seq: number, stamp: WriteStamp, atMs = performance.now()): void {
    const at = this.rowOf(seq);
    if (at >= 0) this.rows[at + STAMP_INDEX[stamp]] = atMs;
  }

  /** The shard's stamps (SHARD_STAMPS order), taken on the main thread's clock. */
  stampShard(seq: number, shardStamps: Float64Array): void {
    const at = this.rowOf(seq);
    if (at < 0) return;
    for (let i = 0; i < SHARD_STAMPS.length; i++)
      this.rows[at + STAMP_INDEX[SHARD_STAMPS[i] as WriteStamp]] = shardStamps[i] as number;
  }

  /** Row offset of a request still in the ring, or -1 once a later request took its slot. */
  private rowOf(seq: number): number {
    if (seq < 1) return -1;
    const at = ((seq - 1) % this.capacity) * ROW_WIDTH;
    return this.rows[at] === seq ? at : -1;
  }

  summary(): StageSummary {
    const complete: number[] = [];
    let outOfOrder = 0;
    for (let row = 0; row < this.capacity; row++) {
      const at = row * ROW_WIDTH;
      let ok = this.rows[at] !== 0;
      let ordered = true;
      for (let i = 1; ok && i < ROW_WIDTH; i++) {
        const t = this.rows[at + i] as number;
        if (t === 0) ok = false;
        else if (i > 1 && t < (this.rows[at + i - 1] as number)) ordered = false;
      }
      if (!ok) continue;
      complete.push(at);
      if (!ordered) outOfOrder++;
    }
    const stages: StageStats[] = [];
    const gaps = new Float64Array(complete.length);
    const addStage = (name: string, from: number, to: number) => {
      for (let k = 0; k < complete.length; k++) {
        const at = complete[k] as number;
        gaps[k] = ((this.rows[at + to] as number) - (this.rows[at + from] as number)) * 1000;
      }
      stages.push(statsOf(name, gaps));
    };
    for (let i = 1; i < WRITE_STAMPS.length; i++)
      addStage(`${WRITE_STAMPS[i - 1]} → ${WRITE_STAMPS[i]}`, i, i + 1);
    addStage("total", 1, WRITE_STAMPS.length);
    return { requests: complete.length, out_of_order: outOfOrder, stages };
  }
}

function statsOf(stage: string, values: Float64Array): StageStats {
  const count = values.length;
  if (count === 0) return { stage, count, min_us: 0, mean_us: 0, p50_us: 0, p99_us: 0, max_us: 0 };
  const sorted = Float64Array.from(values).sort();
  let sum = 0;
  for (const v of sorted) sum += v;
  const at = (q: number) => round1(sorted[Math.min(count - 1, Math.floor(q * count))] as number);
  return {
    stage,
    count,
    min_us: round1(sorted[0] as number),
    mean_us: round1(sum / count),
    p50_us: at(0.5),
    p99_us: at(0.99),
    max_us: round1(sorted[count - 1] as number),
  };
}

function round1(v: number): number {
  return Math.round(v * 10) / 10;
}
