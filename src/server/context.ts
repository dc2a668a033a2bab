import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { AuditLog } from "../audit/audit_log.js";
import type { Config } from "../config.js";
import type { Clock } from "../domain/clock.js";
import type { MainMetrics } from "../metrics/main_metrics.js";
import type { CircuitBreakers } from "../safety/circuit_breaker.js";
import type { Escalations } from "../safety/escalations.js";
import type { Safety } from "../safety/safety.js";
import type { AliasStore } from "../store/alias_store.js";
import type { DecisionMarks } from "../store/decision_marks.js";
import type { EpochStore } from "../store/epoch_store.js";
import type { GoldStore } from "../store/gold_store.js";
import type { MetaStore } from "../store/meta_store.js";
import type { TrustBook } from "../trust/trust_book.js";
import type { ShardPool } from "./shard_pool.js";
import type { ShardReads } from "./shard_reads.js";
import type { HttpEngineInfo } from "./uws_engine.js";

/** What route handlers share. Built once in app.ts. */
export interface ServerContext {
  config: Config;
  pool: ShardPool;
  /** Point reads answered from the main thread's LMDB snapshot when current, else by the shard. */
  reads: ShardReads;
  meta: MetaStore;
  epochs: EpochStore;
  gold: GoldStore;
  /** Quarantine decisions whose trust evidence is counted. */
  decisions: DecisionMarks;
  escalations: Escalations;
  /** Concept aliases: resolve() before routing every write and query. */
  aliases: AliasStore;
  metrics: MainMetrics;
  registry: Registry;
  logger: Logger;
  engine: HttpEngineInfo;
  startedAtMs: number;
  version: string;
  /** Trust, breakers and audit read time from this clock (a TestClock under STEMEDB_TEST_CLOCK=on). */
  clock: Clock;
  trust: TrustBook;
  breakers: CircuitBreakers;
  audit: AuditLog;
  safety: Safety;
}
