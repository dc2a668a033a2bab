import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { Config } from "../config.js";
import type { TrustView } from "../domain/trust_view.js";
import type { MainMetrics } from "../metrics/main_metrics.js";
import type { AliasStore } from "../store/alias_store.js";
import type { EpochStore } from "../store/epoch_store.js";
import type { MetaStore } from "../store/meta_store.js";
import type { ShardPool } from "./shard_pool.js";
import type { HttpEngineInfo } from "./uws_engine.js";

/** What route handlers share. Built once in app.ts. */
export interface ServerContext {
  config: Config;
  pool: ShardPool;
  meta: MetaStore;
  epochs: EpochStore;
  trust: TrustView;
  /** Concept aliases: resolve() before routing every write and query. */
  aliases: AliasStore;
  metrics: MainMetrics;
  registry: Registry;
  logger: Logger;
  engine: HttpEngineInfo;
  startedAtMs: number;
  version: string;
}
