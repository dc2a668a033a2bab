/**
 * Per-shard metrics. Each shard worker thread owns one prom-client `Registry`, calls
 * `createShardMetrics(registry, shardId)` once at start-up, and answers the main thread's
 * metrics request with `registry.getMetricsAsJSON()` (plain data, structured-clone safe).
 *
 * Every series carries `shard="<id>"`, so when the main thread merges all registries with
 * `AggregatorRegistry.aggregate` (which sums samples with identical labels) no two shards'
 * samples ever collapse into one. That makes the default `sum` aggregator correct for every
 * family here, gauges included: each label set has exactly one contributor.
 *
 * Hot path: all handles with fixed label sets are prom-client children created once here
 * (`metric.labels({...})`), so callers never build label objects or look metrics up by name.
 * Values passed to `observe`/`inc`/`set` must be finite (prom-client throws on a non-finite
 * histogram observation, and a NaN counter increment poisons the series forever).
 */
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { Counter, Gauge, type Registry } from "prom-client";
import { BATCH_SIZE_BUCKETS, LATENCY_BUCKETS_SECONDS } from "./buckets.js";
import { FastCounter, FastHistogram, type IncChild, type ObserveChild } from "./fast_metrics.js";

/** What callers use of a counter or histogram child: prom-client's and fast_metrics.ts's. */
export type CounterChild = IncChild;
export type GaugeChild = Gauge.Internal<string>;
export type HistogramChild = ObserveChild;

/** Metric family names registered by `createShardMetrics` (one registry per shard thread). */
export const SHARD_METRIC = {
  walFsyncLatency: "stemedb_wal_fsync_latency_seconds",
  walWrites: "stemedb_wal_writes_total",
  walBytesWritten: "stemedb_wal_bytes_written_total",
  walWriteErrors: "stemedb_wal_write_errors_total",
  walDiskUsage: "stemedb_wal_disk_usage_bytes",
  walDiskCapacity: "stemedb_wal_disk_capacity_bytes",
  walDiskAvailable: "stemedb_wal_disk_available_bytes",
  walSegments: "stemedb_wal_segments_count",
  walBatchSize: "stemedb_wal_batch_size",
  walFlushLatency: "stemedb_wal_flush_latency_seconds",
  walRecoveryAttempts: "stemedb_wal_recovery_attempts_total",
  walRecoveryDuration: "stemedb_wal_recovery_duration_seconds",
  walRotations: "stemedb_wal_rotations_total",
  walTornTailTruncations: "stemedb_wal_torn_tail_truncations_total",
  walLastLsn: "stemedb_wal_last_lsn",
  checkpointLsn: "stemedb_checkpoint_lsn",
  walIoMode: "stemedb_wal_io_mode",
  storageOpDuration: "stemedb_storage_operation_duration_seconds",
  storageOps: "stemedb_storage_operations_total",
  indexLookupDuration: "stemedb_index_lookup_duration_seconds",
  assertions: "stemedb_assertions_total",
  queryLatency: "stemedb_query_latency_seconds",
  shardQueueDepth: "stemedb_shard_queue_depth",
  quarantinePending: "stemedb_quarantine_pending",
} as const;

/** Per-thread families, registered in every thread's registry (main and each shard). */
export const THREAD_METRIC = {
  cpu: "stemedb_thread_cpu_seconds_total",
  eventLoopUtilization: "stemedb_thread_event_loop_utilization",
  eventLoopActive: "stemedb_thread_event_loop_active_seconds_total",
} as const;

export const SHARD_METRIC_NAMES: readonly string[] = Object.freeze(Object.values(SHARD_METRIC));
export const THREAD_METRIC_NAMES: readonly string[] = Object.freeze(Object.values(THREAD_METRIC));

/** Bounded label values. Callers outside these sets must map to "other". */
export const WAL_ERROR_KINDS = ["write", "fsync", "no_space", "open", "rotate", "other"] as const;
export type WalErrorKind = (typeof WAL_ERROR_KINDS)[number];
export const STORAGE_OPERATIONS = ["get", "put", "delete", "range", "txn"] as const;
export type StorageOperation = (typeof STORAGE_OPERATIONS)[number];
export const STORAGE_STATUSES = ["ok", "error"] as const;
export type StorageStatus = (typeof STORAGE_STATUSES)[number];
export const WAL_IO_MODES = ["direct", "buffered"] as const;
export type WalIoMode = (typeof WAL_IO_MODES)[number];

/** Cap on distinct values of an open-ended label (index, lens, status) per registry. */
export const MAX_LABEL_VALUES = 64;
export const OVERFLOW_LABEL_VALUE = "other";

/**
 * Caches prom-client children per label value so the hot path does one Map lookup.
 * Bounded: once `maxValues - 1` distinct values exist, new values share the "other" child,
 * which keeps series cardinality (and this map) bounded even if a caller passes junk.
 */
export class LabelChildCache<C> {
  private readonly children = new Map<string, C>();

  constructor(
    private readonly make: (value: string) => C,
    private readonly maxValues: number = MAX_LABEL_VALUES,
  ) {
    if (!Number.isInteger(maxValues) || maxValues < 2) {
      throw new Error(`LabelChildCache maxValues must be an integer >= 2, got ${maxValues}`);
    }
  }

  get(value: string): C {
    const hit = this.children.get(value);
    if (hit !== undefined) return hit;
    // One slot is reserved for the overflow child.
    const key = this.children.size < this.maxValues - 1 ? value : OVERFLOW_LABEL_VALUE;
    let child = this.children.get(key);
    if (child === undefined) {
      child = this.make(key);
      this.children.set(key, child);
    }
    return child;
  }

  get size(): number {
    return this.children.size;
  }
}

export interface ShardMetrics {
  readonly shardId: number;
  /** Seconds per fdatasync/fsync of the WAL (only the sync call). */
  readonly walFsyncLatency: HistogramChild;
  /** WAL records appended (one per record, not per flush). */
  readonly walWrites: CounterChild;
  readonly walBytesWritten: CounterChild;
  readonly walWriteErrors: Readonly<Record<WalErrorKind, CounterChild>>;
  /** Bytes of WAL segment files on disk for this shard. */
  readonly walDiskUsage: GaugeChild;
  /** Size and free space (for unprivileged users) of the filesystem holding the WAL. */
  readonly walDiskCapacity: GaugeChild;
  readonly walDiskAvailable: GaugeChild;
  readonly walSegments: GaugeChild;
  /** Records per group-commit flush. */
  readonly walBatchSize: HistogramChild;
  /** Seconds per flush: write(s) plus sync. */
  readonly walFlushLatency: HistogramChild;
  readonly walRecoveryAttempts: CounterChild;
  /** Duration of the most recent recovery (a gauge: recovery runs about once per start). */
  readonly walRecoveryDuration: GaugeChild;
  readonly walRotations: CounterChild;
  readonly walTornTailTruncations: CounterChild;
  /** LSNs as float64: exact up to 2^53. */
  readonly walLastLsn: GaugeChild;
  readonly checkpointLsn: GaugeChild;
  readonly quarantinePending: GaugeChild;
  readonly shardQueueDepth: GaugeChild;
  readonly storageOpDuration: Readonly<Record<StorageOperation, HistogramChild>>;
  readonly storageOps: Readonly<
    Record<StorageOperation, Readonly<Record<StorageStatus, CounterChild>>>
  >;
  /** Children for open-ended labels, cached and bounded by MAX_LABEL_VALUES. */
  indexLookup(index: string): HistogramChild;
  assertions(status: string): CounterChild;
  queryLatency(lens: string): HistogramChild;
  /** Sets `stemedb_wal_io_mode{mode}` to 1 for `mode` and 0 for the other mode. */
  setWalIoMode(mode: WalIoMode): void;
  /** Convenience for storage layers: counts the op and observes its duration. */
  recordStorageOp(op: StorageOperation, status: StorageStatus, durationSeconds: number): void;
}

export function shardThreadLabel(shardId: number): string {
  return `shard_${shardId}`;
}

function mapOf<K extends string, V>(keys: readonly K[], make: (k: K) => V): Record<K, V> {
  const out = {} as Record<K, V>;
  for (const k of keys) out[k] = make(k);
  return Object.freeze(out);
}

export interface ReadLabels {
  readonly lens: string | null;
  readonly index: string;
  readonly operation: StorageOperation;
}

/**
 * The labels a read is recorded under, by shard request type: its query-latency `lens` (null:
 * none), the index it mostly uses and its storage operation. The shard threads and the main
 * thread's snapshot reads (snapshot_read_metrics.ts) both use this table, so a read lands in
 * the same series whichever thread answered it.
 */
export const READ_METRIC_LABELS = {
  get: { lens: "get", index: "records", operation: "get" },
  record: { lens: null, index: "records", operation: "get" },
  votes: { lens: null, index: "votes", operation: "range" },
  source_get: { lens: null, index: "sources", operation: "range" },
  lens_latest: { lens: "latest", index: "by_concept", operation: "range" },
  lens_history: { lens: "history", index: "by_concept", operation: "range" },
  lens_active: { lens: "active", index: "by_concept", operation: "range" },
  lens_under: { lens: "under", index: "latest", operation: "range" },
} as const satisfies Record<string, ReadLabels>;

// Shared with snapshot_read_metrics.ts, which registers the same families on the main thread.
export const QUERY_LATENCY_HELP = "Seconds per query, by lens.";
export const STORAGE_OP_DURATION_HELP = "Seconds per storage (LMDB) operation.";
export const STORAGE_OPS_HELP = "Storage operations by outcome.";
export const INDEX_LOOKUP_HELP = "Seconds per index lookup.";

export function createShardMetrics(registry: Registry, shardId: number): ShardMetrics {
  if (!Number.isInteger(shardId) || shardId < 0 || shardId > 1023) {
    throw new Error(`shardId must be an integer in [0, 1023], got ${shardId}`);
  }
  const shard = String(shardId);
  const registers = [registry];
  const latency = LATENCY_BUCKETS_SECONDS;

  // Counters and histograms are recorded per read and per flush: the fast families.
  const hist = (name: string, help: string, buckets: readonly number[], extra: string[] = []) =>
    new FastHistogram(name, help, ["shard", ...extra], buckets, registers);
  const counter = (name: string, help: string, extra: string[] = []) =>
    new FastCounter(name, help, ["shard", ...extra], registers);
  const gauge = (name: string, help: string, extra: string[] = []) =>
    new Gauge({ name, help, labelNames: ["shard", ...extra], registers });

  // Fixed-label children are zeroed up front so every series exists from start-up: alert
  // rules like rate(x[5m]) > 0 then see 0 rather than "no data".
  const h0 = (m: FastHistogram, labels: Record<string, string> = {}): HistogramChild => {
    const child = m.labels({ shard, ...labels });
    child.zero();
    return child;
  };
  const c0 = (m: FastCounter, labels: Record<string, string> = {}): CounterChild => {
    const child = m.labels({ shard, ...labels });
    child.inc(0);
    return child;
  };
  const g0 = (m: Gauge<string>, labels: Record<string, string> = {}): GaugeChild => {
    const child = m.labels({ shard, ...labels });
    child.set(0);
    return child;
  };

  const M = SHARD_METRIC;
  const walWriteErrors = counter(M.walWriteErrors, "WAL write failures by kind.", ["error"]);
  const walIoMode = gauge(M.walIoMode, "1 for the WAL I/O mode in use, else 0.", ["mode"]);
  const ioModeChildren = mapOf(WAL_IO_MODES, (mode) => g0(walIoMode, { mode }));
  const storageOpDurationH = hist(M.storageOpDuration, STORAGE_OP_DURATION_HELP, latency, [
    "operation",
  ]);
  const storageOpsC = counter(M.storageOps, STORAGE_OPS_HELP, ["operation", "status"]);
  const indexLookupH = hist(M.indexLookupDuration, INDEX_LOOKUP_HELP, latency, ["index"]);
  const assertionsC = counter(M.assertions, "Assertions processed by outcome.", ["status"]);
  const queryLatencyH = hist(M.queryLatency, QUERY_LATENCY_HELP, latency, ["lens"]);

  const storageOpDuration = mapOf(STORAGE_OPERATIONS, (operation) =>
    h0(storageOpDurationH, { operation }),
  );
  const storageOps = mapOf(STORAGE_OPERATIONS, (operation) =>
    mapOf(STORAGE_STATUSES, (status) => c0(storageOpsC, { operation, status })),
  );
  const indexCache = new LabelChildCache((index) => h0(indexLookupH, { index }));
  const assertionCache = new LabelChildCache((status) => c0(assertionsC, { status }));
  const lensCache = new LabelChildCache((lens) => h0(queryLatencyH, { lens }));

  createThreadMetrics(registry, shardThreadLabel(shardId));

  return {
    shardId,
    walFsyncLatency: h0(hist(M.walFsyncLatency, "Seconds per WAL fsync/fdatasync.", latency)),
    walWrites: c0(counter(M.walWrites, "WAL records appended.")),
    walBytesWritten: c0(counter(M.walBytesWritten, "Bytes appended to the WAL.")),
    walWriteErrors: mapOf(WAL_ERROR_KINDS, (error) => c0(walWriteErrors, { error })),
    walDiskUsage: g0(gauge(M.walDiskUsage, "Bytes of WAL segment files on disk.")),
    walDiskCapacity: g0(gauge(M.walDiskCapacity, "Size of the filesystem holding the WAL.")),
    walDiskAvailable: g0(
      gauge(M.walDiskAvailable, "Bytes available on the filesystem holding the WAL."),
    ),
    walSegments: g0(gauge(M.walSegments, "WAL segment files on disk.")),
    walBatchSize: h0(
      hist(M.walBatchSize, "Records per WAL group-commit flush.", BATCH_SIZE_BUCKETS),
    ),
    walFlushLatency: h0(hist(M.walFlushLatency, "Seconds per WAL flush (write + sync).", latency)),
    walRecoveryAttempts: c0(counter(M.walRecoveryAttempts, "WAL recovery runs.")),
    walRecoveryDuration: g0(
      gauge(M.walRecoveryDuration, "Seconds taken by the most recent WAL recovery."),
    ),
    walRotations: c0(counter(M.walRotations, "WAL segment rotations.")),
    walTornTailTruncations: c0(
      counter(M.walTornTailTruncations, "Torn WAL tails truncated during recovery."),
    ),
    walLastLsn: g0(gauge(M.walLastLsn, "LSN of the last durable WAL record.")),
    checkpointLsn: g0(gauge(M.checkpointLsn, "LSN up to which the store is checkpointed.")),
    quarantinePending: g0(
      gauge(M.quarantinePending, "Assertions waiting in quarantine for an admin decision."),
    ),
    shardQueueDepth: g0(gauge(M.shardQueueDepth, "Requests queued for this shard.")),
    storageOpDuration,
    storageOps,
    indexLookup: (index) => indexCache.get(index),
    assertions: (status) => assertionCache.get(status),
    queryLatency: (lens) => lensCache.get(lens),
    setWalIoMode(mode) {
      for (const m of WAL_IO_MODES) ioModeChildren[m].set(m === mode ? 1 : 0);
    },
    recordStorageOp(op, status, durationSeconds) {
      storageOps[op][status].inc();
      storageOpDuration[op].observe(durationSeconds);
    },
  };
}

/**
 * CPU seconds consumed by the calling OS thread, or undefined where unavailable.
 *
 * Node 20 has no per-thread CPU API (`process.cpuUsage()` is process-wide in every thread,
 * `process.threadCpuUsage()` only arrived in Node 23.9). On Linux, `/proc/thread-self`
 * resolves to the calling thread, and synchronous fs calls run on the calling JS thread,
 * so reading `schedstat` (first field: nanoseconds on CPU) gives this thread's CPU time.
 * It excludes the libuv threadpool (async fs, incl. async fsync) and V8 helper threads.
 */
export function readThreadCpuSeconds(): number | undefined {
  try {
    const text = readFileSync("/proc/thread-self/schedstat", "latin1");
    const ns = Number.parseInt(text, 10);
    return Number.isFinite(ns) && ns >= 0 ? ns / 1e9 : undefined;
  } catch {
    return undefined; // not Linux, or /proc not mounted
  }
}

/**
 * Registers per-thread CPU and event-loop families in `registry`, labelled `thread`.
 * The values are read in `collect()`, i.e. on whichever thread calls
 * `registry.getMetricsAsJSON()`: that must be the thread that owns the registry (it is,
 * since a Registry cannot cross threads).
 *
 * - `stemedb_thread_cpu_seconds_total`: this thread's CPU time (Linux only; no sample elsewhere).
 * - `stemedb_thread_event_loop_active_seconds_total`: time the event loop was not idle
 *   (includes time blocked in synchronous syscalls such as fsync); rate() of it is the
 *   utilization over any window, independent of scrape timing.
 * - `stemedb_thread_event_loop_utilization`: utilization since the previous collect.
 */
export function createThreadMetrics(registry: Registry, thread: string): void {
  const labels = { thread };
  let lastCpu = 0;
  let lastActiveMs = 0;
  let lastElu = performance.eventLoopUtilization();
  new Counter({
    name: THREAD_METRIC.cpu,
    help: "CPU seconds used by this thread (Linux /proc/thread-self/schedstat).",
    labelNames: ["thread"],
    registers: [registry],
    collect() {
      const cpu = readThreadCpuSeconds();
      if (cpu === undefined || cpu < lastCpu) return;
      this.inc(labels, cpu - lastCpu);
      lastCpu = cpu;
    },
  });
  new Counter({
    name: THREAD_METRIC.eventLoopActive,
    help: "Seconds this thread's event loop was active (not idle) since thread start.",
    labelNames: ["thread"],
    registers: [registry],
    collect() {
      const activeMs = performance.eventLoopUtilization().active;
      this.inc(labels, Math.max(0, activeMs - lastActiveMs) / 1000);
      lastActiveMs = Math.max(activeMs, lastActiveMs);
    },
  });
  new Gauge({
    name: THREAD_METRIC.eventLoopUtilization,
    help: "Event loop utilization (0..1) of this thread since the previous scrape.",
    labelNames: ["thread"],
    registers: [registry],
    collect() {
      const now = performance.eventLoopUtilization();
      const delta = performance.eventLoopUtilization(now, lastElu);
      // Two scrapes in the same tick give a zero-length window: report since-start instead.
      const u = delta.idle + delta.active > 0 ? delta.utilization : now.utilization;
      this.set(labels, Number.isFinite(u) ? u : 0);
      lastElu = now;
    },
  });
}
