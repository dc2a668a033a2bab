// Server configuration from environment variables. Every variable, its default and its
// meaning is in CONFIG_VARS (config_vars.ts, the source for `.env.example`); loadConfig()
// validates all of them up front and throws a ConfigError naming the variable, the bad
// value and what is expected, so a misconfigured server refuses to start instead of
// failing later. An empty value counts as unset (common in .env files).

import os from "node:os";
import path from "node:path";
import { DAY_MS, DEFAULT_BIND_ADDR, LOG_LEVELS, type LogLevel } from "./config_vars.js";
import { parseApiKey } from "./domain/api_keys.js";
import {
  DEFAULT_APPLY_DELAY_MS,
  DEFAULT_SHARD_QUEUE_MAX_ITEMS,
  DEFAULT_SHARD_YOUNG_GEN_MB,
  DEFAULT_WAL_SEGMENT_BYTES,
  DEFAULT_WS_MAX_CONNECTIONS,
  DEFAULT_WS_MAX_INFLIGHT,
  MAX_APPLY_DELAY_MS,
  MAX_SHARD_QUEUE_MAX_ITEMS,
  MAX_SHARD_YOUNG_GEN_MB,
  MAX_SHARDS,
  MAX_WAL_SEGMENT_BYTES,
  MAX_WS_MAX_CONNECTIONS,
  MAX_WS_MAX_INFLIGHT,
  MIN_SHARD_YOUNG_GEN_MB,
  MIN_WAL_SEGMENT_BYTES,
  WAL_ALIGNMENT_BYTES,
} from "./domain/limits.js";
import { MAX_STAGE_TRACE_REQUESTS } from "./metrics/stage_trace.js";

export {
  CONFIG_VARS,
  type ConfigVar,
  DEFAULT_BIND_ADDR,
  DEFAULT_PORT,
  LOG_LEVELS,
  type LogLevel,
  renderEnvExample,
} from "./config_vars.js";

export interface Config {
  /** As given, e.g. "127.0.0.1:18180" or "[::1]:18180". */
  bindAddr: string;
  /** Host part without brackets, e.g. "127.0.0.1", "::1", "0.0.0.0". */
  bindHost: string;
  /** 0 means "any free port" (tests). */
  bindPort: number;
  /** Absolute paths. */
  dataDir: string;
  walDir: string;
  dbDir: string;
  /** `<dataDir>/meta`: API keys, agents, aliases, epochs, audit (not configurable). */
  metaDir: string;
  shardCount: number;
  logLevel: LogLevel;
  allowUwsFallback: boolean;
  /** Imported as the first admin key of an empty data directory; null = generate one. */
  adminKey: string | null;
  walSegmentBytes: number;
  shardQueueMaxItems: number;
  /** Longest wait before acknowledged records are committed to LMDB (apply_pipeline.ts). */
  applyDelayMs: number;
  /** V8 young generation per shard worker, MiB. */
  shardYoungGenMb: number;
  /** STEMEDB_WAL_FLUSH: where each shard writes and syncs its WAL batches. */
  walFlushMode: "pool" | "inline";
  /** STEMEDB_SNAPSHOT_READS: reads from the main thread's LMDB snapshot when it is current. */
  snapshotReads: boolean;
  /** STEMEDB_STAGE_TRACE: write requests whose stage stamps are kept (0 = off). */
  stageTraceRequests: number;
  metricsPublic: boolean;
  walSyncMode: "dsync" | "fdatasync";
  walDirect: boolean;
  walRepair: boolean;
  /** Absolute path, or null (segments are recycled without a copy). */
  walArchiveDir: string | null;
  requestTimeoutMs: number;
  meterEnabled: boolean;
  aphoriaEnabled: boolean;
  /** WS /v1/stream: messages one connection may have in flight (written, not yet acked). */
  wsMaxInflight: number;
  /** WS /v1/stream: open connections, at most (503 at the upgrade beyond). */
  wsMaxConnections: number;
  /** Trust ranks and circuit breakers (src/trust, src/safety; docs/trust-and-safety.md). */
  safety: SafetyConfig;
  /** Quarantine checks on new assertions (gold, trust, probation); off only to measure their cost. */
  writeChecks: boolean;
}

export interface SafetyConfig {
  trustHalfLifeMs: number;
  trustDecayIntervalMs: number;
  breakerWindowMs: number;
  breakerThreshold: number;
  breakerMinVolume: number;
  breakerMinBadRatio: number;
  breakerCooldownMs: number;
  breakerHalfOpenProbes: number;
  /** TEST ONLY: a movable clock and POST /v1/admin/test/clock. */
  testClock: boolean;
  /** Writes by agents below this trust go to quarantine. */
  quarantineMinTrust: number;
  /** After a breaker trip, the agent's writes go to quarantine for this long (probation). */
  probationMs: number;
  /** An escalation opens when the consensus margin is below this... */
  escalationMargin: number;
  /** ...and the top two values each have an author with at least this trust. */
  escalationMinTrust: number;
}

export class ConfigError extends Error {
  readonly variable: string;
  constructor(variable: string, value: string, expected: string) {
    super(`${variable}=${JSON.stringify(value)} is invalid: expected ${expected}`);
    this.name = "ConfigError";
    this.variable = variable;
  }
}

type Env = Record<string, string | undefined>;

function get(env: Env, name: string): string | undefined {
  const v = env[name];
  if (v === undefined) return undefined;
  const trimmed = v.trim();
  return trimmed === "" ? undefined : trimmed;
}

const TRUE_WORDS = new Set(["1", "true", "yes", "on"]);
const FALSE_WORDS = new Set(["0", "false", "no", "off"]);

function parseBool(env: Env, name: string, dflt: boolean): boolean {
  const v = get(env, name);
  if (v === undefined) return dflt;
  const lower = v.toLowerCase();
  if (TRUE_WORDS.has(lower)) return true;
  if (FALSE_WORDS.has(lower)) return false;
  throw new ConfigError(name, v, "one of 1/0, true/false, yes/no, on/off");
}

function parseInteger(env: Env, name: string, dflt: number, min: number, max: number): number {
  const v = get(env, name);
  if (v === undefined) return dflt;
  if (!/^[0-9]+$/.test(v)) throw new ConfigError(name, v, `an integer in [${min}, ${max}]`);
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new ConfigError(name, v, `an integer in [${min}, ${max}]`);
  }
  return n;
}

/** Parse "host:port", "[v6]:port". */
export function parseBindAddr(name: string, v: string): { host: string; port: number } {
  const expected = 'host:port, e.g. "127.0.0.1:18180", "0.0.0.0:18180" or "[::1]:18180"';
  let host: string;
  let portText: string;
  if (v.startsWith("[")) {
    const m = /^\[([0-9a-fA-F:.]+)\]:([0-9]+)$/.exec(v);
    if (!m) throw new ConfigError(name, v, expected);
    host = m[1] as string;
    portText = m[2] as string;
  } else {
    const i = v.lastIndexOf(":");
    if (i <= 0 || v.indexOf(":") !== i) throw new ConfigError(name, v, expected);
    host = v.slice(0, i);
    portText = v.slice(i + 1);
    if (!/^[A-Za-z0-9.-]+$/.test(host)) throw new ConfigError(name, v, expected);
  }
  if (!/^[0-9]{1,5}$/.test(portText) || Number(portText) > 65535) {
    throw new ConfigError(name, v, `${expected}, with a port in 0..65535`);
  }
  return { host, port: Number(portText) };
}

function parseRatio(env: Env, name: string, dflt: number): number {
  const v = get(env, name);
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!/^[0-9]*\.?[0-9]+$/.test(v) || !(n >= 0 && n <= 1)) {
    throw new ConfigError(name, v, "a decimal number in [0, 1]");
  }
  return n;
}

function parseTestClock(env: Env): boolean {
  const v = get(env, "STEMEDB_TEST_CLOCK") ?? "off";
  if (v === "on" || v === "off") return v === "on";
  throw new ConfigError("STEMEDB_TEST_CLOCK", v, "on or off (test only)");
}

function loadSafetyConfig(env: Env): SafetyConfig {
  return {
    trustHalfLifeMs: parseInteger(
      env,
      "STEMEDB_TRUST_HALF_LIFE_MS",
      30 * DAY_MS,
      1_000,
      3650 * DAY_MS,
    ),
    trustDecayIntervalMs: parseInteger(
      env,
      "STEMEDB_TRUST_DECAY_INTERVAL_MS",
      DAY_MS,
      1_000,
      365 * DAY_MS,
    ),
    breakerWindowMs: parseInteger(env, "STEMEDB_BREAKER_WINDOW_MS", 60_000, 1_000, DAY_MS),
    breakerThreshold: parseInteger(env, "STEMEDB_BREAKER_THRESHOLD", 10, 1, 1_000_000),
    breakerMinVolume: parseInteger(env, "STEMEDB_BREAKER_MIN_VOLUME", 20, 1, 1_000_000),
    breakerMinBadRatio: parseRatio(env, "STEMEDB_BREAKER_MIN_BAD_RATIO", 0.5),
    breakerCooldownMs: parseInteger(env, "STEMEDB_BREAKER_COOLDOWN_MS", 30_000, 1_000, DAY_MS),
    breakerHalfOpenProbes: parseInteger(env, "STEMEDB_BREAKER_HALF_OPEN_PROBES", 3, 1, 1_000),
    testClock: parseTestClock(env),
    quarantineMinTrust: parseRatio(env, "STEMEDB_QUARANTINE_MIN_TRUST", 0.2),
    probationMs: parseInteger(env, "STEMEDB_PROBATION_MS", 600_000, 0, DAY_MS),
    escalationMargin: parseRatio(env, "STEMEDB_ESCALATION_MARGIN", 0.25),
    escalationMinTrust: parseRatio(env, "STEMEDB_ESCALATION_MIN_TRUST", 0.7),
  };
}

function defaultShardCount(): number {
  const cores =
    typeof os.availableParallelism === "function" ? os.availableParallelism() : os.cpus().length;
  return Math.min(MAX_SHARDS, Math.max(1, cores));
}

function parseSyncMode(env: Env): "dsync" | "fdatasync" {
  return parseChoice(env, "STEMEDB_WAL_SYNC_MODE", ["dsync", "fdatasync"] as const, "dsync");
}

function parseChoice<T extends string>(
  env: Env,
  name: string,
  choices: readonly T[],
  fallback: T,
): T {
  const v = get(env, name) ?? fallback;
  const found = choices.find((c) => c === v);
  if (found === undefined) throw new ConfigError(name, v, choices.join(" or "));
  return found;
}

/** Read and validate the configuration. Throws ConfigError on the first invalid variable. */
export function loadConfig(env: Env = process.env): Config {
  const bindAddr = get(env, "STEMEDB_BIND_ADDR") ?? DEFAULT_BIND_ADDR;
  const { host, port } = parseBindAddr("STEMEDB_BIND_ADDR", bindAddr);

  const dataDir = path.resolve(get(env, "STEMEDB_DATA_DIR") ?? "./data");
  const walDir = path.resolve(get(env, "STEMEDB_WAL_DIR") ?? path.join(dataDir, "wal"));
  const dbDir = path.resolve(get(env, "STEMEDB_DB_DIR") ?? path.join(dataDir, "db"));
  if (walDir === dbDir) {
    throw new ConfigError("STEMEDB_WAL_DIR", walDir, "a directory different from STEMEDB_DB_DIR");
  }

  const shardCount = parseInteger(env, "STEMEDB_SHARDS", defaultShardCount(), 1, MAX_SHARDS);

  const levelText = get(env, "STEMEDB_LOG_LEVEL") ?? "info";
  const logLevel = levelText.toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new ConfigError("STEMEDB_LOG_LEVEL", levelText, `one of ${LOG_LEVELS.join(", ")}`);
  }

  const adminKey = get(env, "STEMEDB_ADMIN_KEY") ?? null;
  if (adminKey !== null && parseApiKey(adminKey) === null) {
    // Do not echo a secret-looking value back into logs: show only its shape.
    throw new ConfigError(
      "STEMEDB_ADMIN_KEY",
      `<${adminKey.length} characters, redacted>`,
      "a key of the form stm_<12 chars a-z2-7>_<43 chars base64url>, e.g. one printed by a previous start",
    );
  }

  const walSegmentBytes = parseInteger(
    env,
    "STEMEDB_WAL_SEGMENT_BYTES",
    DEFAULT_WAL_SEGMENT_BYTES,
    MIN_WAL_SEGMENT_BYTES,
    MAX_WAL_SEGMENT_BYTES,
  );
  if (walSegmentBytes % WAL_ALIGNMENT_BYTES !== 0) {
    throw new ConfigError(
      "STEMEDB_WAL_SEGMENT_BYTES",
      String(walSegmentBytes),
      `a multiple of ${WAL_ALIGNMENT_BYTES} bytes (O_DIRECT alignment)`,
    );
  }

  return {
    bindAddr,
    bindHost: host,
    bindPort: port,
    dataDir,
    walDir,
    dbDir,
    metaDir: path.join(dataDir, "meta"),
    shardCount,
    logLevel: logLevel as LogLevel,
    allowUwsFallback: parseBool(env, "STEMEDB_ALLOW_UWS_FALLBACK", false),
    adminKey,
    walSegmentBytes,
    shardQueueMaxItems: parseInteger(
      env,
      "STEMEDB_SHARD_QUEUE_MAX",
      DEFAULT_SHARD_QUEUE_MAX_ITEMS,
      1,
      MAX_SHARD_QUEUE_MAX_ITEMS,
    ),
    applyDelayMs: parseInteger(
      env,
      "STEMEDB_APPLY_DELAY_MS",
      DEFAULT_APPLY_DELAY_MS,
      0,
      MAX_APPLY_DELAY_MS,
    ),
    shardYoungGenMb: parseInteger(
      env,
      "STEMEDB_SHARD_YOUNG_GEN_MB",
      DEFAULT_SHARD_YOUNG_GEN_MB,
      MIN_SHARD_YOUNG_GEN_MB,
      MAX_SHARD_YOUNG_GEN_MB,
    ),
    metricsPublic: parseBool(env, "STEMEDB_METRICS_PUBLIC", true),
    walSyncMode: parseSyncMode(env),
    walFlushMode: parseChoice(env, "STEMEDB_WAL_FLUSH", ["inline", "pool"] as const, "inline"),
    snapshotReads: parseBool(env, "STEMEDB_SNAPSHOT_READS", true),
    stageTraceRequests: parseInteger(env, "STEMEDB_STAGE_TRACE", 0, 0, MAX_STAGE_TRACE_REQUESTS),
    walDirect: parseBool(env, "STEMEDB_WAL_DIRECT", true),
    walRepair: parseBool(env, "STEMEDB_WAL_REPAIR", false),
    walArchiveDir: ((v) => (v === undefined ? null : path.resolve(v)))(
      get(env, "STEMEDB_WAL_ARCHIVE_DIR"),
    ),
    requestTimeoutMs: parseInteger(env, "STEMEDB_REQUEST_TIMEOUT_MS", 30_000, 1_000, 600_000),
    meterEnabled: parseBool(env, "STEMEDB_METER_ENABLED", false),
    aphoriaEnabled: parseBool(env, "STEMEDB_APHORIA", false),
    wsMaxInflight: parseInteger(
      env,
      "STEMEDB_WS_MAX_INFLIGHT",
      DEFAULT_WS_MAX_INFLIGHT,
      1,
      MAX_WS_MAX_INFLIGHT,
    ),
    wsMaxConnections: parseInteger(
      env,
      "STEMEDB_WS_MAX_CONNECTIONS",
      DEFAULT_WS_MAX_CONNECTIONS,
      1,
      MAX_WS_MAX_CONNECTIONS,
    ),
    safety: loadSafetyConfig(env),
    writeChecks: parseBool(env, "STEMEDB_WRITE_CHECKS", true),
  };
}
