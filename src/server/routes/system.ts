// GET /v1/health, GET /metrics, and the first API-key routes (POST/GET/DELETE).
import { collectMerged, type MetricObjectWithValues } from "../../metrics/merge.js";
import type { ShardInfo } from "../../shard/protocol.js";
import { KeyRuleError } from "../../store/meta_store.js";
import type { ServerContext } from "../context.js";
import { conflict, notFound } from "../errors.js";
import type { Reply, Route, RouteContext } from "../router.js";
import { CreateApiKeyRequest, parseCreateApiKeyRequest } from "../schemas.js";
import { auditWho } from "./audit.js";

const HEALTH_SHARD_TIMEOUT_MS = 1_000;
const KEY_ID_PATTERN = /^[a-z2-7]{12}$/;
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

/** A refused key change as the API's 409; anything else as it is. */
function keyRuleToApiError(err: unknown): never {
  if (err instanceof KeyRuleError) throw conflict(err.message, err.code);
  throw err;
}

async function createKey(server: ServerContext, ctx: RouteContext): Promise<Reply> {
  const input = parseCreateApiKeyRequest(ctx.body as Buffer, Date.now());
  const { key, record } = await server.meta
    .createKey({
      role: input.role,
      principal: input.principal,
      labels: input.labels,
      expiresAtMs: input.expiresAtMs,
    })
    .catch(keyRuleToApiError);
  server.logger.info(
    { request_id: ctx.requestId, key_id: record.keyId, role: record.role },
    "api key created",
  );
  await server.audit.append({
    ...auditWho(ctx),
    action: "api_key.create",
    target: record.keyId,
    outcome: "ok",
    details: { role: record.role, principal: record.principal },
  });
  return { status: 201, body: JSON.stringify({ key, ...keyJson(record) }) };
}

function keyJson(r: {
  keyId: string;
  role: string;
  principal: string;
  labels: Record<string, string>;
  createdAtMs: number;
  expiresAtMs: number | null;
  revokedAtMs: number | null;
}): Record<string, unknown> {
  return {
    key_id: r.keyId,
    role: r.role,
    principal: r.principal,
    labels: r.labels,
    created_at: r.createdAtMs,
    expires_at: r.expiresAtMs,
    revoked_at: r.revokedAtMs,
  };
}

async function revokeKey(server: ServerContext, ctx: RouteContext): Promise<Reply> {
  const keyId = ctx.params[0] ?? "";
  // Key ids are 12 base32 characters; anything else is unknown without touching the store.
  const existed =
    KEY_ID_PATTERN.test(keyId) && (await server.meta.revoke(keyId).catch(keyRuleToApiError));
  if (!existed) throw notFound(`No API key has id ${JSON.stringify(keyId.slice(0, 40))}.`);
  server.logger.info({ request_id: ctx.requestId, key_id: keyId }, "api key revoked");
  await server.audit.append({
    ...auditWho(ctx),
    action: "api_key.revoke",
    target: keyId,
    outcome: "ok",
  });
  return {
    status: 200,
    body: JSON.stringify(keyJson(server.meta.get(keyId) as Parameters<typeof keyJson>[0])),
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
    {
      method: "post",
      pattern: "/v1/admin/api_keys",
      summary: "Create an API key (shown once)",
      bodySchema: CreateApiKeyRequest,
      role: "admin",
      jsonBody: true,
      handler: (ctx) => createKey(server, ctx),
    },
    {
      method: "get",
      pattern: "/v1/admin/api_keys",
      role: "admin",
      jsonBody: false,
      handler: () => ({
        status: 200,
        body: JSON.stringify({ items: server.meta.list().map(keyJson) }),
      }),
    },
    {
      method: "del",
      pattern: "/v1/admin/api_keys/:id",
      role: "admin",
      jsonBody: false,
      handler: (ctx) => revokeKey(server, ctx),
    },
  ];
}
