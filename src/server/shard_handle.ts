// One shard owner as the main thread sees it: its Worker, the requests it has not answered
// yet, writes coalesced into one transferred buffer per turn, queries of one turn in one
// batch message, bounded queues, and expiry of requests that wait too long.
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";
import type { StageTrace } from "../metrics/stage_trace.js";
import type {
  QueryRequest,
  ResponseBatch,
  ShardEvent,
  ShardInfo,
  ShardResponse,
  ShardWorkerData,
  WriteResult,
} from "../shard/protocol.js";
import { ReadVisibility } from "../shard/read_visibility.js";
import { RECORD_HEADER_BYTES } from "../wal/format.js";
import { walBatchBounds } from "../wal/wal_options.js";

const WORKER_PATH = path.join(
  path.dirname(fileURLToPath(import.meta.url)),
  "../shard/worker_main.js",
);

export class ShardRequestError extends Error {
  constructor(
    readonly shardId: number,
    readonly reason: string,
    message: string,
    /** reason "domain": the HTTP status and code of the broken rule. */
    readonly status?: number,
    readonly code?: string,
  ) {
    super(message);
    this.name = "ShardRequestError";
  }
}

interface Pending {
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  startedMs: number;
  items: number;
  write?: boolean;
  /** Its caller already had the timeout error; the shard still holds the work. */
  expired?: boolean;
}

interface QueuedWrite {
  /** Stage trace row, 0 for none. */
  traceSeq: number;
  records: Uint8Array[];
  resolve: (r: WriteResult) => void;
  reject: (err: Error) => void;
}

export type QueryWithoutReq = QueryRequest extends infer Q
  ? Q extends QueryRequest
    ? Omit<Q, "req">
    : never
  : never;

/** Write messages a shard may have unanswered before new writes wait for an answer. */
const MAX_WRITES_IN_FLIGHT = 2;
/** Queries per batch message at most. */
const MAX_QUERIES_PER_MESSAGE = 1024;
/** Requests (queries and write batches) unanswered by one shard, at most. */
const MAX_PENDING_REQUESTS = 65_536;

export class ShardHandle {
  readonly worker: Worker;
  /** What the shard has shown vs what its LMDB has committed (snapshot reads, shard_reads.ts). */
  readonly visibility = ReadVisibility.create();
  private readonly pending = new Map<number, Pending>();
  private nextReq = 1;
  private queued: QueuedWrite[] = [];
  private flushScheduled = false;
  /** Write messages sent and not yet answered. */
  private writesInFlight = 0;
  /** Records queued or in flight. */
  depthItems = 0;
  info: ShardInfo | null = null;
  exited = false;

  private readonly flush = () => this.flushWrites();
  /**
   * One write message carries at most this much (framed, as the WAL counts it): half the
   * shard's WAL batch, so a message always fits (a larger one would be refused as WAL
   * backpressure). The rest of the queue goes in the next message.
   */
  private readonly maxMessageBytes: number;
  private readonly maxMessageRecords: number;
  private queuedQueries: QueryRequest[] = [];
  private readonly flushQueriesNow = () => this.flushQueries();

  constructor(
    readonly shardId: number,
    data: Omit<ShardWorkerData, "readVisibility" | "traceOriginMs">,
    private readonly queueMaxItems: number,
    youngGenMb: number,
    private readonly trace: StageTrace | null,
  ) {
    const bounds = walBatchBounds(data.segmentSizeBytes);
    this.maxMessageBytes = Math.floor(bounds.maxBatchBytes / 2);
    this.maxMessageRecords = Math.floor(bounds.maxBatchRecords / 2);
    const workerData: ShardWorkerData = {
      ...data,
      readVisibility: this.visibility.buffer,
      traceOriginMs: trace === null ? null : trace.originMs,
    };
    this.worker = new Worker(WORKER_PATH, {
      workerData,
      resourceLimits: { maxYoungGenerationSizeMb: youngGenMb },
    });
  }

  ready(): Promise<ShardInfo> {
    return new Promise((resolve, reject) => {
      const onMessage = (msg: ShardEvent | ShardResponse) => {
        if (msg.t === "ready") {
          this.info = msg.info;
          this.worker.off("message", onMessage);
          this.worker.on("message", (m: ShardResponse | ResponseBatch) => {
            if (m.t === "batch_res") for (const item of m.items) this.onResponse(item);
            else this.onResponse(m);
          });
          resolve(msg.info);
        } else if (msg.t === "fatal") {
          reject(new ShardRequestError(this.shardId, msg.code ?? "fatal", msg.message));
        }
      };
      this.worker.on("message", onMessage);
      this.worker.once("error", (err) => reject(err));
      this.worker.once("exit", (code) => {
        this.exited = true;
        const err = new ShardRequestError(
          this.shardId,
          "exited",
          `shard ${this.shardId} exited with code ${code}`,
        );
        reject(err);
        this.failAll(err);
      });
    });
  }

  write(records: Uint8Array[], traceSeq = 0): Promise<WriteResult> {
    if (this.exited)
      return Promise.reject(
        new ShardRequestError(this.shardId, "exited", `shard ${this.shardId} is not running`),
      );
    // A batch larger than the whole bound is taken when nothing else waits: otherwise a valid
    // batch could never be written. So the depth stays ≤ max(bound, MAX_BATCH_ITEMS).
    if (this.depthItems > 0 && this.depthItems + records.length > this.queueMaxItems) {
      return Promise.reject(
        new ShardRequestError(
          this.shardId,
          "backpressure",
          `shard ${this.shardId} queue is full (${this.queueMaxItems} items)`,
        ),
      );
    }
    this.depthItems += records.length;
    return new Promise((resolve, reject) => {
      this.trace?.stamp(traceSeq, "queued");
      this.queued.push({ traceSeq, records, resolve, reject });
      // Natural batching on this side too: with fewer than MAX_WRITES_IN_FLIGHT messages
      // out, send at the end of this turn (a microtask, no extra tick); otherwise the
      // writes gather until an answer comes back, so under load there is about one
      // message per WAL flush instead of one per request.
      if (!this.flushScheduled && this.writesInFlight < MAX_WRITES_IN_FLIGHT) {
        this.flushScheduled = true;
        queueMicrotask(this.flush);
      }
    });
  }

  private flushWrites(): void {
    this.flushScheduled = false;
    if (this.queued.length === 0) return;
    // Whole requests, oldest first, up to the message bound (always at least one).
    let total = 0;
    let bytes = 0;
    let framed = 0;
    let take = 0;
    for (const q of this.queued) {
      let qBytes = 0;
      for (const r of q.records) qBytes += r.byteLength;
      const qFramed = qBytes + RECORD_HEADER_BYTES * q.records.length;
      if (
        take > 0 &&
        (framed + qFramed > this.maxMessageBytes ||
          total + q.records.length > this.maxMessageRecords)
      )
        break;
      take++;
      total += q.records.length;
      bytes += qBytes;
      framed += qFramed;
    }
    const batch = take === this.queued.length ? this.queued : this.queued.slice(0, take);
    this.queued = take === this.queued.length ? [] : this.queued.slice(take);
    const buf = new ArrayBuffer(bytes);
    const view = new Uint8Array(buf);
    const offsets = new Uint32Array(total + 1);
    let at = 0;
    let n = 0;
    for (const q of batch) {
      for (const r of q.records) {
        offsets[n++] = at;
        view.set(r, at);
        at += r.byteLength;
      }
    }
    offsets[n] = at;
    if (this.trace !== null) {
      const sentMs = performance.now();
      for (const q of batch) this.trace.stamp(q.traceSeq, "sent", sentMs);
    }
    const req = this.nextReq++;
    this.writesInFlight++;
    this.pending.set(req, {
      startedMs: Date.now(),
      items: total,
      write: true,
      resolve: (value) => {
        const result = value as WriteResult;
        if (this.trace !== null && result.stages !== undefined)
          this.stampAnswer(batch, result.stages);
        let from = 0;
        for (const q of batch) {
          const to = from + q.records.length;
          q.resolve({
            lsns: result.lsns.subarray(from, to),
            flags: result.flags.subarray(from, to),
          });
          from = to;
        }
      },
      reject: (err) => {
        for (const q of batch) q.reject(err);
      },
    });
    this.worker.postMessage({ t: "write", req, buf, offsets }, [buf, offsets.buffer]);
    // What did not fit goes now if another message may be out, else after the next answer.
    if (
      this.queued.length > 0 &&
      !this.flushScheduled &&
      this.writesInFlight < MAX_WRITES_IN_FLIGHT
    ) {
      this.flushScheduled = true;
      queueMicrotask(this.flush);
    }
  }

  private stampAnswer(batch: QueuedWrite[], shardStamps: Float64Array): void {
    const trace = this.trace as StageTrace;
    const receivedMs = performance.now();
    for (const q of batch) {
      trace.stampShard(q.traceSeq, shardStamps);
      trace.stamp(q.traceSeq, "ack_received", receivedMs);
    }
  }

  query<T>(msg: QueryWithoutReq): Promise<T> {
    if (this.pending.size >= MAX_PENDING_REQUESTS) {
      return Promise.reject(
        new ShardRequestError(
          this.shardId,
          "backpressure",
          `shard ${this.shardId} has ${MAX_PENDING_REQUESTS} requests waiting`,
        ),
      );
    }
    if (this.exited)
      return Promise.reject(
        new ShardRequestError(this.shardId, "exited", `shard ${this.shardId} is not running`),
      );
    // The message is queued by reference and gets its req here (no copy per query), so one
    // object sent twice would carry the second req in both: refuse it instead of misrouting.
    const message = msg as QueryRequest;
    if (message.req !== undefined)
      return Promise.reject(new Error("a shard query message was sent twice; build one per call"));
    const req = this.nextReq++;
    message.req = req;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(req, {
        resolve: resolve as (v: unknown) => void,
        reject,
        startedMs: Date.now(),
        items: 0,
      });
      this.queuedQueries.push(message);
      if (this.queuedQueries.length === 1) queueMicrotask(this.flushQueriesNow);
      else if (this.queuedQueries.length >= MAX_QUERIES_PER_MESSAGE) this.flushQueries();
    });
  }

  /** Sends the queries of this turn: one message, a batch if there are several. */
  private flushQueries(): void {
    const msgs = this.queuedQueries;
    if (msgs.length === 0) return;
    this.queuedQueries = [];
    if (msgs.length === 1) this.worker.postMessage(msgs[0]);
    else this.worker.postMessage({ t: "batch", msgs });
  }

  private onResponse(msg: ShardResponse): void {
    const p = this.pending.get(msg.req);
    if (p === undefined) return;
    this.pending.delete(msg.req);
    this.depthItems -= p.items;
    if (p.write === true) this.writeAnswered();
    if (p.expired === true) return; // its caller had the timeout error
    if (msg.ok) p.resolve(msg.value);
    else
      p.reject(
        new ShardRequestError(
          this.shardId,
          msg.error.reason,
          msg.error.message,
          msg.error.status,
          msg.error.code,
        ),
      );
  }

  private writeAnswered(): void {
    this.writesInFlight--;
    if (this.queued.length > 0 && !this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(this.flush);
    }
  }

  /**
   * Fails the callers of requests older than timeoutMs. Their queue capacity (items, write
   * slots, pending entries) is given back only when the shard answers: it still holds the
   * work, and a stuck shard must push back (503) rather than be sent more.
   */
  expire(nowMs: number, timeoutMs: number): void {
    for (const p of this.pending.values()) {
      if (p.expired === true || nowMs - p.startedMs < timeoutMs) continue;
      p.expired = true;
      p.reject(
        new ShardRequestError(
          this.shardId,
          "timeout",
          `shard ${this.shardId} did not answer within ${timeoutMs} ms`,
        ),
      );
    }
  }

  failAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    this.writesInFlight = 0;
    for (const q of this.queued) q.reject(err);
    this.queued = [];
    this.queuedQueries = [];
    this.depthItems = 0;
  }
}
