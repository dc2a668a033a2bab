// Assembles the server: data directory checks, meta store, shard owners, routes, listening.
// `startServer` is used by src/server/main.ts and by tests that need an in-process handle.

import type { us_listen_socket } from "uWebSockets.js";
import fs from "node:fs";
import path from "node:path";
import { type Logger, pino } from "pino";
import { Registry } from "prom-client";
import type { Config } from "../config.js";
import { createMainMetrics } from "../metrics/main_metrics.js";
import { createSnapshotReadMetrics } from "../metrics/snapshot_read_metrics.js";
import { StageTrace } from "../metrics/stage_trace.js";
import { Escalations } from "../safety/escalations.js";
import { openSafety } from "../safety/safety.js";
import type { ActiveList } from "../shard/protocol.js";
import { shardDirs } from "../shard/shard_open.js";
import { AliasStore } from "../store/alias_store.js";
import { DecisionMarks } from "../store/decision_marks.js";
import { EpochStore } from "../store/epoch_store.js";
import { GoldStore } from "../store/gold_store.js";
import { ensureManifest, readManifest } from "../store/manifest.js";
import { META_DIR, MetaStore } from "../store/meta_store.js";
import type { ServerContext } from "./context.js";
import { buildOpenApi } from "./openapi.js";
import { type Route, registerRoutes } from "./router.js";
import { apiKeyRoutes } from "./routes/api_keys.js";
import { assertRoutes } from "./routes/assert.js";
import { backupRoutes } from "./routes/backup.js";
import { conceptRoutes } from "./routes/concepts.js";
import { epochRoutes } from "./routes/epochs.js";
import { escalationRoutes } from "./routes/escalations.js";
import { goldRoutes } from "./routes/gold.js";
import { quarantineRoutes } from "./routes/quarantine.js";
import { queryRoutes } from "./routes/query.js";
import { safetyRoutes } from "./routes/safety.js";
import { sourceRoutes } from "./routes/sources.js";
import { stateRoutes } from "./routes/state.js";
import { systemRoutes } from "./routes/system.js";
import { ShardPool, ShardRequestError } from "./shard_pool.js";
import { ShardReads } from "./shard_reads.js";
import { registerStream } from "./stream.js";
import { loadUws } from "./uws_engine.js";

export class StartupError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "StartupError";
  }
}

export interface RunningServer {
  port: number;
  context: ServerContext;
  /** Generated admin key, only on the first start of an empty data directory. */
  createdAdminKey: string | null;
  /**
   * Stop accepting, drain in-flight requests and WS messages, close WS connections,
   * checkpoint every shard, close stores.
   */
  shutdown(drainTimeoutMs?: number): Promise<void>;
}

const DRAIN_POLL_MS = 10;

function packageVersion(): string {
  const url = new URL("../../../package.json", import.meta.url);
  return (JSON.parse(fs.readFileSync(url, "utf8")) as { version: string }).version;
}

function nonEmptyDir(dir: string): boolean {
  try {
    return fs.readdirSync(dir).length > 0;
  } catch {
    return false;
  }
}

function checkDataDirectory(config: Config): void {
  for (const dir of [config.dataDir, config.walDir, config.dbDir])
    fs.mkdirSync(dir, { recursive: true });
  if (
    readManifest(config.dataDir) === null &&
    (nonEmptyDir(config.walDir) || nonEmptyDir(config.dbDir))
  ) {
    throw new StartupError(
      "manifest_missing",
      `The data directory ${config.dataDir} has no manifest.json but ${config.walDir} or ${config.dbDir} holds data. ` +
        "Restore manifest.json from a backup (it records the shard count) rather than starting over it.",
    );
  }
  const metaFile = path.join(config.dataDir, META_DIR, "data.mdb");
  if (
    readManifest(config.dataDir) !== null &&
    !fs.existsSync(metaFile) &&
    (nonEmptyDir(config.walDir) || nonEmptyDir(config.dbDir))
  ) {
    // Opening it would create an empty one: every key, agent, trust figure, alias, epoch and
    // audit entry would be gone without a word.
    throw new StartupError(
      "meta_missing",
      `The data directory ${config.dataDir} holds shard data but no ${metaFile} (API keys, agents, trust, aliases, epochs, audit). ` +
        "Restore meta/ from a backup rather than starting without it.",
    );
  }
  ensureManifest(config.dataDir, config.shardCount);
}

export async function startServer(
  config: Config,
  logger: Logger = pino({ level: config.logLevel }),
): Promise<RunningServer> {
  const { uws, info: engine } = loadUws();
  if (engine.engine === "fallback" && !config.allowUwsFallback) {
    throw new StartupError(
      "uws_fallback",
      `uWebSockets.js could not load its native binary (${engine.detail.trim()}); the pure-JS fallback is too slow to serve. ` +
        "Use Node 16/18/20 on glibc x64/arm64, or set STEMEDB_ALLOW_UWS_FALLBACK=1 to start anyway.",
    );
  }
  checkDataDirectory(config);
  const meta = MetaStore.open(config.dataDir);
  const admin = await meta.ensureAdminKey({
    dataDir: config.dataDir,
    envAdminKey: config.adminKey,
  });
  const stageTrace =
    config.stageTraceRequests > 0 ? new StageTrace(config.stageTraceRequests) : null;
  let pool: ShardPool;
  try {
    pool = await ShardPool.start(
      {
        shardCount: config.shardCount,
        segmentSizeBytes: config.walSegmentBytes,
        syncMode: config.walSyncMode,
        direct: config.walDirect,
        repair: config.walRepair,
        walArchiveRoot: config.walArchiveDir,
        queueMaxItems: config.shardQueueMaxItems,
        applyDelayMs: config.applyDelayMs,
        youngGenMb: config.shardYoungGenMb,
        walFlushMode: config.walFlushMode,
        requestTimeoutMs: config.requestTimeoutMs,
        stageTrace,
      },
      (id) => shardDirs(config.walDir, config.dbDir, id),
    );
  } catch (err) {
    await meta.close();
    if (err instanceof ShardRequestError && err.reason === "wal_corruption") {
      // Restarting cannot help: exit as a configuration-class failure (code 2), not a crash.
      throw new StartupError("wal_corruption", err.message);
    }
    throw err;
  }
  const registry = new Registry();
  const version = packageVersion();
  const inflight = { count: 0, draining: false };
  const metrics = createMainMetrics(registry, { version, inflight });
  metrics.setHttpEngine(engine.engine);
  metrics.setApiKeyAgeSource(() => meta.oldestActiveSecretAgeS(Date.now()));
  let reads: ShardReads;
  try {
    reads = ShardReads.open(
      pool,
      (id) => shardDirs(config.walDir, config.dbDir, id).dbDir,
      createSnapshotReadMetrics(registry, pool.shardCount),
      config.snapshotReads,
    );
  } catch (err) {
    await pool.close();
    await meta.close();
    throw err;
  }
  const safety = openSafety({ meta, config: config.safety, metrics, logger });
  const context: ServerContext = {
    config,
    pool,
    reads,
    meta,
    epochs: new EpochStore(meta.root),
    gold: new GoldStore(meta.root),
    decisions: new DecisionMarks(meta.root, safety.clock.nowMs()),
    escalations: new Escalations({
      root: meta.root,
      registry,
      nowMs: () => safety.clock.nowMs(),
      trustOf: (agent) => safety.trust.trust(agent),
      activeList: (shard, concept, limit) =>
        reads.lens<ActiveList>(shard, {
          t: "lens_active",
          concept,
          asOfLsn: null,
          limit,
          render: false,
        }),
      shardCount: pool.shardCount,
      marginBelow: config.safety.escalationMargin,
      minTrust: config.safety.escalationMinTrust,
      onError: (err, concept) => logger.error({ err, concept }, "escalation check failed"),
    }),
    aliases: AliasStore.open(meta.root),
    metrics,
    registry,
    logger,
    engine,
    startedAtMs: Date.now(),
    version,
    clock: safety.clock,
    trust: safety.trust,
    breakers: safety.breakers,
    audit: safety.audit,
    safety,
  };
  const app = uws.App();
  const routes: Route[] = [
    ...systemRoutes(context),
    ...apiKeyRoutes(context),
    ...assertRoutes(context),
    ...queryRoutes(context),
    ...backupRoutes(context),
    ...stateRoutes(context),
    ...epochRoutes(context),
    ...sourceRoutes(context),
    ...conceptRoutes(context),
    ...safetyRoutes(context),
    ...goldRoutes(context),
    ...quarantineRoutes(context),
    ...escalationRoutes(context),
  ];
  const openapi: Route = {
    method: "get",
    pattern: "/v1/openapi.json",
    role: null,
    jsonBody: false,
    summary: "This document",
    handler: () => ({ status: 200, body: openapiText }),
  };
  routes.push(openapi);
  const openapiText = buildOpenApi(routes, version);
  const verifyKey = (key: string, nowMs: number) => meta.verify(key, nowMs);
  // Before registerRoutes: its catch-all 404 must not shadow the stream's plain-HTTP answer.
  const stream = registerStream(app, {
    server: context,
    verifyKey,
    inflight,
    maxInflight: config.wsMaxInflight,
    maxConnections: config.wsMaxConnections,
  });
  registerRoutes(app, routes, {
    metrics,
    verifyKey,
    inflight,
    breakers: { table: safety.breakers, nowMs: () => safety.clock.nowMs() },
    stageTrace,
    metaDir: config.metaDir,
    onError: (err, requestId, route) =>
      logger.error({ err, request_id: requestId, route }, "request failed"),
  });
  const listenSocket = await new Promise<us_listen_socket | false>((resolve) =>
    app.listen(config.bindHost, config.bindPort, (socket) => resolve(socket)),
  );
  if (listenSocket === false) {
    await reads.close();
    await pool.close();
    await safety.close();
    await meta.close();
    throw new StartupError(
      "listen_failed",
      `Cannot listen on ${config.bindAddr} (address in use or not permitted).`,
    );
  }
  const port = uws.us_socket_local_port(
    listenSocket as unknown as Parameters<typeof uws.us_socket_local_port>[0],
  );

  let stopping: Promise<void> | null = null;
  const shutdown = (drainTimeoutMs = 10_000): Promise<void> => {
    if (stopping !== null) return stopping;
    stopping = (async () => {
      uws.us_listen_socket_close(listenSocket);
      inflight.draining = true;
      stream.stop();
      const deadline = Date.now() + drainTimeoutMs;
      while (inflight.count > 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, DRAIN_POLL_MS));
      }
      // WS connections outlive the listen socket: end them once their last acks are queued.
      stream.closeAll();
      await reads.close();
      const shardFailures = await pool.close();
      await safety.close();
      await meta.close();
      if (stageTrace !== null) logger.info({ stage_trace: stageTrace.summary() }, "write stages");
      if (shardFailures.length > 0) {
        throw new Error(
          `not every shard checkpointed (nothing is lost: the WAL replays at the next start): ${shardFailures.join("; ")}`,
        );
      }
    })();
    return stopping;
  };
  return { port, context, createdAdminKey: admin.created ? (admin.key ?? null) : null, shutdown };
}
