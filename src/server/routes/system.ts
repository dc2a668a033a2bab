// GET /v1/health and GET /metrics.
import { collectMerged, type MetricObjectWithValues } from "../../metrics/merge.js";
import type { ShardInfo } from "../../shard/protocol.js";
import type { ServerContext } from "../context.js";
import type { Reply, Route } from "../router.js";

const HEALTH_SHARD_TIMEOUT_MS = 1_000;
const SCRAPE_TIMEOUT_MS = 2_000;

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | null> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      () => {
        clearTimeout(timer);
        resolve(null);
      },
    );
  });
}

async function health(server: ServerContext): Promise<Reply> {
  const infos = await Promise.all(
    Array.from({ length: server.pool.shardCount }, (_, id) =>
      withTimeout(server.pool.info(id), HEALTH_SHARD_TIMEOUT_MS),
    ),
  );
  const shards = infos.map((info: ShardInfo | null, shard) =>
    info === null
      ? { shard, status: "unresponsive" }
      : {
          shard,
          status: info.writable ? "ok" : "read_only",
          write_blocker: info.writeBlocker,
          wal_mode: info.walMode,
          sync_mode: info.syncMode,
          last_lsn: info.durableLsn,
          applied_lsn: info.appliedLsn,
          checkpoint_lsn: info.checkpointLsn,
          wal_segments: info.walSegments,
          records: info.records,
          queue_depth: server.pool.queueDepth(shard),
          // Small reads the main thread answered from LMDB without a hop (shard_reads.ts).
          snapshot_reads: server.reads.servedCount(shard),
          recovery: {
            replayed_records: info.recovery.replayedRecords,
            torn_tail_truncations: info.recovery.tornTailTruncations,
            dropped_records: info.recovery.droppedRecords,
            duration_ms: Math.round(info.recovery.durationMs),
            format_upgraded_from: info.recovery.formatUpgradedFrom,
          },
        },
  );
  const healthy = shards.every((s) => s.status === "ok") && server.engine.engine === "native";
  const body = {
    status: healthy ? "ok" : "degraded",
    version: server.version,
    uptime_s: Math.round((Date.now() - server.startedAtMs) / 1000),
    http_engine: server.engine.engine,
    http_engine_detail: server.engine.detail,
    shard_count: server.pool.shardCount,
    shards,
  };
  return { status: healthy ? 200 : 503, body: JSON.stringify(body) };
}

async function metricsRoute(
  server: ServerContext,
  lastGood: Array<MetricObjectWithValues[] | undefined>,
): Promise<Reply> {
  const merged = await collectMerged(
    server.registry,
    server.pool.metricsCollectors(),
    SCRAPE_TIMEOUT_MS,
    lastGood,
  );
  return {
    status: 200,
    body: merged.text,
    contentType: "text/plain; version=0.0.4; charset=utf-8",
  };
}

export function systemRoutes(server: ServerContext): Route[] {
  /** Each shard's last metrics answer, standing in for it while it misses a scrape. */
  const lastGoodMetrics: Array<MetricObjectWithValues[] | undefined> = [];
  return [
    {
      method: "get",
      pattern: "/v1/health",
      role: null,
      jsonBody: false,
      handler: () => health(server),
    },
    {
      method: "get",
      pattern: "/metrics",
      role: server.config.metricsPublic ? null : "reader",
      jsonBody: false,
      handler: () => metricsRoute(server, lastGoodMetrics),
    },
  ];
}
