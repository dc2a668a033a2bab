// Entry point of a shard owner thread: the only thread that touches this shard's WAL and
// LMDB environment. It answers the main thread over its parentPort, one message at a time,
// so every read sees every write acknowledged before it.
import fs from "node:fs";
import { parentPort, workerData } from "node:worker_threads";
import { Registry } from "prom-client";
import { registryJson } from "../metrics/merge.js";
import {
  createShardMetrics,
  READ_METRIC_LABELS,
  type ReadLabels,
} from "../metrics/shard_metrics.js";
import { mainThreadClock } from "../metrics/stage_trace.js";
import { absorbLmdbCommitFailure } from "../store/lmdb_failure.js";
import { InvalidCursorError } from "../store/shard_store.js";
import { WalCorruptionError, WalUnavailableError } from "../wal/errors.js";
import type { WalObserver } from "../wal/wal.js";
import { suggestOnShard } from "./concept_scan.js";
import { handleLens, handleRead } from "./lens_handlers.js";
import type {
  QueryRequest,
  ResponseBatch,
  ShardErrorBody,
  ShardEvent,
  ShardInfo,
  ShardRequest,
  ShardResponse,
  WriteRequest,
} from "./protocol.js";
import { ReadVisibility } from "./read_visibility.js";
import { ShardCore } from "./shard_core.js";
import { runStateWrite, ShardDomainError } from "./state_ops.js";

const port = parentPort;
if (port === null) throw new Error("shard worker must run in a worker thread");
const data = workerData as import("./protocol.js").ShardWorkerData;

const registry = new Registry();
const metrics = createShardMetrics(registry, data.shardId);

const NS_PER_S = 1e9;
const NS_PER_MS = 1e6;
/** STEMEDB_STAGE_TRACE: stamps on the main thread's clock; the last flush's start and end. */
const traceNowMs = data.traceOriginMs === null ? null : mainThreadClock(data.traceOriginMs);
let lastFlushStartMs = 0;
let lastFlushEndMs = 0;
const walObserver: WalObserver = {
  onFlush(records, bytes, _writeNs, syncNs, flushNs) {
    if (traceNowMs !== null) {
      lastFlushEndMs = traceNowMs();
      lastFlushStartMs = lastFlushEndMs - flushNs / NS_PER_MS;
    }
    metrics.walWrites.inc(records);
    metrics.walBytesWritten.inc(bytes);
    metrics.walBatchSize.observe(records);
    metrics.walFsyncLatency.observe(syncNs / NS_PER_S);
    metrics.walFlushLatency.observe(flushNs / NS_PER_S);
  },
  onError(code) {
    const kind = code === "ENOSPC" || code === "EDQUOT" ? "no_space" : "write";
    metrics.walWriteErrors[kind].inc();
  },
  onRotate() {
    metrics.walRotations.inc();
  },
  onSegments(count, diskBytes) {
    metrics.walSegments.set(count);
    metrics.walDiskUsage.set(diskBytes);
  },
};

const visibility = new ReadVisibility(data.readVisibility);

function post(msg: ShardResponse | ShardEvent | ResponseBatch, transfer?: ArrayBuffer[]): void {
  (port as import("node:worker_threads").MessagePort).postMessage(msg, transfer);
}

/** Query answers gathered until the end of this turn's microtasks, then posted together. */
let outbox: ShardResponse[] = [];
/** Answers per message at most (bounds one message's size and structured-clone time). */
const MAX_OUTBOX_ITEMS = 1024;

function flushOutbox(): void {
  const items = outbox;
  if (items.length === 0) return;
  outbox = [];
  if (items.length === 1) post(items[0] as ShardResponse);
  else post({ t: "batch_res", items });
}

function respond(res: ShardResponse): void {
  if (outbox.length === 0) queueMicrotask(flushOutbox);
  outbox.push(res);
  if (outbox.length >= MAX_OUTBOX_ITEMS) flushOutbox();
}

/** The metric labels of each read message (shard_metrics.ts), by message type. */
const READ_LABELS: Partial<Record<ShardRequest["t"], ReadLabels>> = READ_METRIC_LABELS;

function errorBody(err: unknown): ShardErrorBody {
  if (err instanceof ShardDomainError)
    return { reason: "domain", message: err.message, status: err.status, code: err.code };
  if (err instanceof WalUnavailableError) return { reason: err.reason, message: err.message };
  if (err instanceof InvalidCursorError) return { reason: "invalid_cursor", message: err.message };
  const e = err as Error;
  return { reason: "internal", message: e?.message ?? String(err) };
}

// A failed LMDB commit also rejects a promise lmdb-js made and left unobserved; unhandled, it
// would end this thread. The failure is handled through the apply pipeline (writes and range
// reads are refused, point reads keep working); anything else unhandled still ends the thread.
process.on("unhandledRejection", (reason) => {
  if (absorbLmdbCommitFailure(reason)) return;
  throw reason;
});

let core: ShardCore;
try {
  metrics.walRecoveryAttempts.inc();
  core = await ShardCore.open({
    shardId: data.shardId,
    walDir: data.walDir,
    dbDir: data.dbDir,
    segmentSizeBytes: data.segmentSizeBytes,
    syncMode: data.syncMode,
    direct: data.direct,
    repair: data.repair,
    walArchiveDir: data.walArchiveDir,
    applyDelayMs: data.applyDelayMs,
    walFlushMode: data.walFlushMode,
    walObserver,
    onApplied: (_records, seconds, ok) => {
      metrics.recordStorageOp("txn", ok ? "ok" : "error", seconds);
      if (ok) visibility.publishCommitted(core.store.committedLsn);
    },
    onAppend: (id, lsn) => visibility.touch(id, lsn),
  });
} catch (err) {
  const code =
    err instanceof WalCorruptionError ? err.code : ((err as { code?: string }).code ?? null);
  post({ t: "fatal", message: (err as Error).message, code });
  process.exit(1);
}
metrics.walRecoveryDuration.set(core.recovery.durationMs / 1000);
metrics.walTornTailTruncations.inc(core.recovery.tornTailTruncations);
metrics.setWalIoMode(core.wal.ioMode);

function info(): ShardInfo {
  const stats = core.store.stats();
  const blocker = core.writeBlocker;
  return {
    shardId: data.shardId,
    walMode: core.wal.ioMode,
    syncMode: data.syncMode,
    nextLsn: core.wal.nextLsn,
    durableLsn: core.wal.durableLsn,
    // Committed, not merely issued: what the env's record count and reads reflect.
    appliedLsn: core.store.committedLsn,
    checkpointLsn: core.checkpointLsn,
    walSegments: core.wal.segmentCount,
    records: stats.records,
    concepts: stats.concepts,
    writable: blocker === null,
    writeBlocker: blocker === null ? null : blocker.message,
    recovery: core.recovery,
  };
}

function refreshGauges(): void {
  metrics.shardQueueDepth.set(core.pendingRecords);
  metrics.walLastLsn.set(core.wal.durableLsn);
  metrics.checkpointLsn.set(core.checkpointLsn);
  metrics.quarantinePending.set(
    (core.store.dbs.held.getStats() as { entryCount: number }).entryCount,
  );
  try {
    const fsStats = fs.statfsSync(data.walDir);
    metrics.walDiskCapacity.set(fsStats.blocks * fsStats.bsize);
    metrics.walDiskAvailable.set(fsStats.bavail * fsStats.bsize);
  } catch {
    // statfs failing leaves the last values; the WAL itself reports real I/O errors.
  }
}

function handleWrite(msg: WriteRequest): void {
  const bytes = new Uint8Array(msg.buf);
  const count = msg.offsets.length - 1;
  const records: Uint8Array[] = new Array(count);
  for (let i = 0; i < count; i++) {
    records[i] = bytes.subarray(msg.offsets[i] as number, msg.offsets[i + 1] as number);
  }
  const req = msg.req;
  const receivedMs = traceNowMs === null ? 0 : traceNowMs();
  try {
    writeRecords(req, records, receivedMs);
  } catch (err) {
    // An invariant broke inside the write path: answer this request, keep the shard serving.
    post({ t: "res", req, ok: false, error: errorBody(err) });
  }
}

function writeRecords(req: number, records: Uint8Array[], receivedMs: number): void {
  core.write(records, (err, outcome) => {
    if (err !== null || outcome === null) {
      post({ t: "res", req, ok: false, error: errorBody(err) });
      return;
    }
    let added = 0;
    for (let i = 0; i < outcome.flags.length; i++) if (outcome.flags[i] === 0) added++;
    if (added > 0) metrics.assertions("active").inc(added);
    const transfer = [outcome.lsns.buffer as ArrayBuffer, outcome.flags.buffer as ArrayBuffer];
    if (traceNowMs !== null) {
      // The callback runs right after the flush that made these records durable. A batch of
      // duplicates may have waited for a flush that began before it arrived (count the wait
      // from its arrival) or for none at all (the flush took no time).
      const postedMs = traceNowMs();
      const flushed = lastFlushEndMs >= receivedMs;
      const stages = Float64Array.of(
        receivedMs,
        flushed ? Math.max(lastFlushStartMs, receivedMs) : postedMs,
        flushed ? lastFlushEndMs : postedMs,
        postedMs,
      );
      post({ t: "res", req, ok: true, value: { ...outcome, stages } }, [
        ...transfer,
        stages.buffer,
      ]);
      return;
    }
    post({ t: "res", req, ok: true, value: outcome }, transfer);
  });
}

async function handleQuery(msg: QueryRequest): Promise<unknown> {
  switch (msg.t) {
    case "get":
    case "record":
    case "votes":
    case "source_get":
    case "held_list":
    case "agent_assertions":
      return handleRead(core, msg);
    case "lens_latest":
    case "lens_history":
    case "lens_active":
    case "lens_under":
      return handleLens(core, msg);
    case "vote":
    case "status_event":
    case "supersede":
    case "source_put":
    case "epoch_mark":
      return new Promise((resolve, reject) =>
        runStateWrite(core, msg, (err, value) => (err === null ? resolve(value) : reject(err))),
      );
    case "concepts": // [concepts] suggest
      await core.settledForRangeRead();
      return suggestOnShard(core.store, msg.q, msg.limit, msg.maxScanKeys);
    case "info":
      return info();
    case "metrics":
      refreshGauges();
      return registryJson(registry);
    case "checkpoint":
      return core.checkpoint();
    case "backup":
      return core.backup(msg.walDir, msg.dbDir);
    case "close":
      await core.close();
      // The store is closed now: only what the WAL and the checkpoint say.
      return { durableLsn: core.wal.durableLsn, checkpointLsn: core.checkpointLsn };
  }
}

const dispatchQuery = (msg: QueryRequest): void => {
  const req = msg.req;
  const started = performance.now();
  handleQuery(msg).then(
    (value) => {
      const seconds = (performance.now() - started) / 1000;
      const labels = READ_LABELS[msg.t];
      if (labels !== undefined) {
        if (labels.lens !== null) metrics.queryLatency(labels.lens).observe(seconds);
        metrics.indexLookup(labels.index).observe(seconds);
        metrics.recordStorageOp(labels.operation, "ok", seconds);
      }
      respond({ t: "res", req, ok: true, value });
      if (msg.t === "close") {
        flushOutbox();
        port.close();
      }
    },
    (err: unknown) => respond({ t: "res", req, ok: false, error: errorBody(err) }),
  );
};

port.on("message", (msg: ShardRequest) => {
  if (msg.t === "write") handleWrite(msg);
  else if (msg.t === "batch") for (const m of msg.msgs) dispatchQuery(m);
  else dispatchQuery(msg);
});

visibility.publishCommitted(core.store.committedLsn);
post({ t: "ready", info: info() });
