// Every environment variable the server reads, with its default and meaning: the source
// for `.env.example` (renderEnvExample) and the docs. config.ts parses and validates them.

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

export const DEFAULT_PORT = 18180;
export const DEFAULT_BIND_ADDR = `127.0.0.1:${DEFAULT_PORT}`;

export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const DAY_MS = 86_400_000;

export interface ConfigVar {
  name: string;
  /** The default as written in .env.example ("" = unset/none). */
  default: string;
  meaning: string;
}

/** Every environment variable the server reads. Keep in sync with loadConfig(). */
export const CONFIG_VARS: readonly ConfigVar[] = [
  {
    name: "STEMEDB_BIND_ADDR",
    default: DEFAULT_BIND_ADDR,
    meaning: "host:port to listen on (IPv6 as [::1]:18180); port 0 picks a free port",
  },
  {
    name: "STEMEDB_DATA_DIR",
    default: "./data",
    meaning: "data directory: manifest.json, admin.key, meta/ (keys, agents, audit)",
  },
  {
    name: "STEMEDB_WAL_DIR",
    default: "<STEMEDB_DATA_DIR>/wal",
    meaning: "write-ahead log segments, one subdirectory per shard",
  },
  {
    name: "STEMEDB_DB_DIR",
    default: "<STEMEDB_DATA_DIR>/db",
    meaning: "LMDB environments, one per shard",
  },
  {
    name: "STEMEDB_SHARDS",
    default: "<os.availableParallelism()>",
    meaning: `number of shards (1..${MAX_SHARDS}); fixed when the data directory is created`,
  },
  { name: "STEMEDB_LOG_LEVEL", default: "info", meaning: `log level: ${LOG_LEVELS.join(", ")}` },
  {
    name: "STEMEDB_ALLOW_UWS_FALLBACK",
    default: "0",
    meaning: "1 = start even if the native uWebSockets.js binary fails to load (slow JS fallback)",
  },
  {
    name: "STEMEDB_ADMIN_KEY",
    default: "",
    meaning: "admin key (stm_<keyId>_<secret>) to install on first start instead of generating one",
  },
  {
    name: "STEMEDB_WAL_SEGMENT_BYTES",
    default: String(DEFAULT_WAL_SEGMENT_BYTES),
    meaning: `WAL segment size in bytes: a multiple of ${WAL_ALIGNMENT_BYTES}, ${MIN_WAL_SEGMENT_BYTES}..${MAX_WAL_SEGMENT_BYTES}`,
  },
  {
    name: "STEMEDB_SHARD_QUEUE_MAX",
    default: String(DEFAULT_SHARD_QUEUE_MAX_ITEMS),
    meaning: `most queued write items per shard before writes get 503 (1..${MAX_SHARD_QUEUE_MAX_ITEMS}); a larger batch is taken only when nothing else is queued`,
  },
  {
    name: "STEMEDB_WAL_FLUSH",
    default: "inline",
    meaning:
      "inline = each shard writes + syncs its WAL batches on its own thread (two thread wake-ups fewer per flush; the shard's reads wait for the sync); pool = on a libuv thread (reads go on meanwhile)",
  },
  {
    name: "STEMEDB_SNAPSHOT_READS",
    default: "true",
    meaning:
      "true = `latest`, short `history` pages and reads by id are answered on the main thread from LMDB whenever LMDB holds every write the shard has acknowledged (no thread hop; same answers); false = always by the shard",
  },
  {
    name: "STEMEDB_STAGE_TRACE",
    default: "0",
    meaning: `0 = off; N (1..${MAX_STAGE_TRACE_REQUESTS}) = keep timestamps of every stage of the last N POST /v1/assert requests and log where their time went at shutdown (a diagnostic: no cost measurable above noise up to c=16; 7–11 % fewer writes/s at c=64 in two rounds)`,
  },
  {
    name: "STEMEDB_APPLY_DELAY_MS",
    default: String(DEFAULT_APPLY_DELAY_MS),
    meaning: `longest wait before acknowledged writes are committed to LMDB in one transaction (0..${MAX_APPLY_DELAY_MS}); reads see them at once either way`,
  },
  {
    name: "STEMEDB_SHARD_YOUNG_GEN_MB",
    default: String(DEFAULT_SHARD_YOUNG_GEN_MB),
    meaning: `V8 young generation of each shard worker thread, MiB (${MIN_SHARD_YOUNG_GEN_MB}..${MAX_SHARD_YOUNG_GEN_MB}); more means fewer scavenges of writes waiting for their LMDB commit, and more memory per shard`,
  },
  {
    name: "STEMEDB_METRICS_PUBLIC",
    default: "true",
    meaning: "true = /metrics needs no key; false = /metrics needs a reader key",
  },
  {
    name: "STEMEDB_METER_ENABLED",
    default: "false",
    meaning: "true = per-API-key metering of requests, assertions and bytes",
  },
  {
    name: "STEMEDB_WAL_SYNC_MODE",
    default: "dsync",
    meaning: "dsync = O_DSYNC on each WAL write; fdatasync = a separate fdatasync after each write",
  },
  {
    name: "STEMEDB_WAL_DIRECT",
    default: "true",
    meaning: "true = O_DIRECT WAL writes (falls back to buffered where the filesystem refuses)",
  },
  {
    name: "STEMEDB_WAL_ARCHIVE_DIR",
    default: "",
    meaning:
      "if set, WAL segments behind a checkpoint are copied here (one subdirectory per shard, fsynced) before they are recycled",
  },
  {
    name: "STEMEDB_WAL_REPAIR",
    default: "false",
    meaning:
      "true = on a corrupt WAL, truncate at the bad record and report dropped records instead of refusing to start",
  },
  {
    name: "STEMEDB_REQUEST_TIMEOUT_MS",
    default: "30000",
    meaning: "longest a request waits for its shard before 503 (1000..600000)",
  },
  {
    name: "STEMEDB_WS_MAX_INFLIGHT",
    default: String(DEFAULT_WS_MAX_INFLIGHT),
    meaning: `WS /v1/stream: messages one connection may have in flight before the rest wait (1..${MAX_WS_MAX_INFLIGHT})`,
  },
  {
    name: "STEMEDB_WS_MAX_CONNECTIONS",
    default: String(DEFAULT_WS_MAX_CONNECTIONS),
    meaning: `WS /v1/stream: open connections before upgrades get 503 (1..${MAX_WS_MAX_CONNECTIONS})`,
  },
  {
    name: "STEMEDB_APHORIA",
    default: "off",
    meaning: "on = enable the Aphoria policy drift endpoints",
  },
  ...safetyVars(),
];

function safetyVars(): ConfigVar[] {
  return [
    {
      name: "STEMEDB_TRUST_HALF_LIFE_MS",
      default: String(30 * DAY_MS),
      meaning:
        "trust decay half-life: evidence older by this much weighs half (1000 ms..3650 days)",
    },
    {
      name: "STEMEDB_TRUST_DECAY_INTERVAL_MS",
      default: String(DAY_MS),
      meaning:
        "how often the trust decay runs (1000 ms..365 days); also POST /v1/admin/decay_trust_ranks",
    },
    {
      name: "STEMEDB_BREAKER_WINDOW_MS",
      default: "60000",
      meaning: "circuit breaker sliding window (1000..86400000)",
    },
    {
      name: "STEMEDB_BREAKER_THRESHOLD",
      default: "10",
      meaning:
        "bad writes (rejected, invalid, quarantined) in the window that trip an agent's breaker",
    },
    {
      name: "STEMEDB_BREAKER_MIN_VOLUME",
      default: "20",
      meaning: "writes in the window (ok + bad) needed before a breaker may trip",
    },
    {
      name: "STEMEDB_WRITE_CHECKS",
      default: "on",
      meaning: "on|off: quarantine checks on new assertions (off only to measure their cost)",
    },
    {
      name: "STEMEDB_QUARANTINE_MIN_TRUST",
      default: "0.2",
      meaning: "writes by agents whose trust is below this go to quarantine (0..1)",
    },
    {
      name: "STEMEDB_PROBATION_MS",
      default: "600000",
      meaning: "after a breaker trip, the agent's writes go to quarantine for this long",
    },
    {
      name: "STEMEDB_ESCALATION_MARGIN",
      default: "0.25",
      meaning: "an escalation opens when the consensus margin is below this (0..1)",
    },
    {
      name: "STEMEDB_ESCALATION_MIN_TRUST",
      default: "0.7",
      meaning: "...and each of the top two values has an author with at least this trust",
    },
    {
      name: "STEMEDB_BREAKER_MIN_BAD_RATIO",
      default: "0.5",
      meaning: "bad / total in the window needed to trip (0..1)",
    },
    {
      name: "STEMEDB_BREAKER_COOLDOWN_MS",
      default: "30000",
      meaning: "how long an open breaker refuses writes (429 + Retry-After) before half-opening",
    },
    {
      name: "STEMEDB_BREAKER_HALF_OPEN_PROBES",
      default: "3",
      meaning:
        "writes a half-open breaker lets through; that many successes close it, one failure re-opens",
    },
    {
      name: "STEMEDB_TEST_CLOCK",
      default: "off",
      meaning: "TEST ONLY. on = a movable clock and POST /v1/admin/test/clock; never in production",
    },
  ];
}

/** Render CONFIG_VARS as an `.env.example` file (defaults commented out). */
export function renderEnvExample(): string {
  const lines = ["# StemeDB server configuration. Empty or unset = the default shown.", ""];
  for (const v of CONFIG_VARS) {
    lines.push(`# ${v.meaning}`);
    lines.push(`#${v.name}=${v.default}`);
    lines.push("");
  }
  return lines.join("\n");
}
