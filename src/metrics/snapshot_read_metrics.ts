// The shards' read families (query latency, index lookups, storage operations) registered in
// the main thread's registry for the reads it answers from its own LMDB snapshot
// (server/shard_reads.ts): same names, help, labels and buckets, so the /metrics merge adds
// both paths into one series per shard.
import type { Registry } from "prom-client";
import { LATENCY_BUCKETS_SECONDS } from "./buckets.js";
import { FastCounter, FastHistogram, type IncChild, type ObserveChild } from "./fast_metrics.js";
import {
  INDEX_LOOKUP_HELP,
  QUERY_LATENCY_HELP,
  READ_METRIC_LABELS,
  SHARD_METRIC,
  STORAGE_OP_DURATION_HELP,
  STORAGE_OPS_HELP,
} from "./shard_metrics.js";

/** The reads the main thread answers from its own LMDB snapshot. */
const SNAPSHOT_READS = ["get", "lens_latest", "lens_history"] as const;
export type SnapshotRead = (typeof SNAPSHOT_READS)[number];

/** Registers the families; returns what records one read (shard, kind, seconds). */
export function createSnapshotReadMetrics(
  registry: Registry,
  shardCount: number,
): (shardId: number, read: SnapshotRead, seconds: number) => void {
  const registers = [registry];
  const hist = (name: string, help: string, label: string) =>
    new FastHistogram(name, help, ["shard", label], LATENCY_BUCKETS_SECONDS, registers);
  const query = hist(SHARD_METRIC.queryLatency, QUERY_LATENCY_HELP, "lens");
  const index = hist(SHARD_METRIC.indexLookupDuration, INDEX_LOOKUP_HELP, "index");
  const opDuration = hist(SHARD_METRIC.storageOpDuration, STORAGE_OP_DURATION_HELP, "operation");
  const ops = new FastCounter(
    SHARD_METRIC.storageOps,
    STORAGE_OPS_HELP,
    ["shard", "operation", "status"],
    registers,
  );
  // Children made up front (shards x reads), so the hot path only indexes.
  const children = Array.from({ length: shardCount }, (_, id) => {
    const shard = String(id);
    const out = {} as Record<SnapshotRead, { timings: ObserveChild[]; ok: IncChild }>;
    for (const read of SNAPSHOT_READS) {
      const l = READ_METRIC_LABELS[read];
      out[read] = {
        timings: [
          query.labels({ shard, lens: l.lens }),
          index.labels({ shard, index: l.index }),
          opDuration.labels({ shard, operation: l.operation }),
        ],
        ok: ops.labels({ shard, operation: l.operation, status: "ok" }),
      };
    }
    return out;
  });
  return (shardId, read, seconds) => {
    const c = children[shardId]?.[read];
    if (c === undefined) throw new RangeError(`no shard ${shardId}`);
    for (const h of c.timings) h.observe(seconds);
    c.ok.inc();
  };
}
