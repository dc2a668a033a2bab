import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { CONFIG_VARS, ConfigError, loadConfig, renderEnvExample } from "../src/config.js";
import { generateApiKey } from "../src/domain/api_keys.js";

function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error("expected a ConfigError");
}

describe("loadConfig", () => {
  it("has documented defaults", () => {
    const c = loadConfig({});
    expect(c.bindAddr).toBe("127.0.0.1:18180");
    expect([c.bindHost, c.bindPort]).toEqual(["127.0.0.1", 18180]);
    expect(c.dataDir).toBe(path.resolve("./data"));
    expect(c.walDir).toBe(path.join(c.dataDir, "wal"));
    expect(c.dbDir).toBe(path.join(c.dataDir, "db"));
    expect(c.metaDir).toBe(path.join(c.dataDir, "meta"));
    expect(c.shardCount).toBe(Math.min(256, os.availableParallelism()));
    expect(c.logLevel).toBe("info");
    expect(c.allowUwsFallback).toBe(false);
    expect(c.adminKey).toBeNull();
    expect(c.walSegmentBytes).toBe(64 * 1024 * 1024);
    expect(c.shardQueueMaxItems).toBe(65_536);
    expect(c.metricsPublic).toBe(true);
    expect(c.meterEnabled).toBe(false);
    expect(c.aphoriaEnabled).toBe(false);
    expect([c.wsMaxInflight, c.wsMaxConnections]).toEqual([256, 1024]);
    expect(c.shardYoungGenMb).toBe(96);
  });

  it("reads every variable", () => {
    const key = generateApiKey().key;
    const c = loadConfig({
      STEMEDB_BIND_ADDR: "[::1]:0",
      STEMEDB_DATA_DIR: "/tmp/x",
      STEMEDB_WAL_DIR: "/fast/wal",
      STEMEDB_SHARDS: "4",
      STEMEDB_LOG_LEVEL: "DEBUG",
      STEMEDB_ALLOW_UWS_FALLBACK: "1",
      STEMEDB_ADMIN_KEY: key,
      STEMEDB_WAL_SEGMENT_BYTES: String(1024 * 1024),
      STEMEDB_SHARD_QUEUE_MAX: "10",
      STEMEDB_METRICS_PUBLIC: "false",
      STEMEDB_METER_ENABLED: "true",
      STEMEDB_APHORIA: "on",
      STEMEDB_WS_MAX_INFLIGHT: "8",
      STEMEDB_WS_MAX_CONNECTIONS: "3",
      STEMEDB_SHARD_YOUNG_GEN_MB: "48",
    });
    expect([c.bindHost, c.bindPort]).toEqual(["::1", 0]);
    expect([c.dataDir, c.walDir, c.dbDir]).toEqual(["/tmp/x", "/fast/wal", "/tmp/x/db"]);
    expect(c.shardCount).toBe(4);
    expect(c.logLevel).toBe("debug");
    expect(c.allowUwsFallback).toBe(true);
    expect(c.adminKey).toBe(key);
    expect(c.walSegmentBytes).toBe(1024 * 1024);
    expect(c.shardQueueMaxItems).toBe(10);
    expect([c.metricsPublic, c.meterEnabled, c.aphoriaEnabled]).toEqual([false, true, true]);
    expect([c.wsMaxInflight, c.wsMaxConnections]).toEqual([8, 3]);
    expect(c.shardYoungGenMb).toBe(48);
  });

  it("treats empty values as unset", () => {
    expect(loadConfig({ STEMEDB_SHARDS: "", STEMEDB_ADMIN_KEY: " " }).adminKey).toBeNull();
  });

  it("names the variable, the value and what is expected", () => {
    const cases: Array<[Record<string, string>, string, RegExp]> = [
      [
        { STEMEDB_SHARDS: "0" },
        "STEMEDB_SHARDS",
        /STEMEDB_SHARDS="0" is invalid: expected an integer in \[1, 256\]/,
      ],
      [{ STEMEDB_SHARDS: "four" }, "STEMEDB_SHARDS", /"four"/],
      [{ STEMEDB_SHARDS: "257" }, "STEMEDB_SHARDS", /256/],
      [{ STEMEDB_BIND_ADDR: "localhost" }, "STEMEDB_BIND_ADDR", /host:port/],
      [{ STEMEDB_BIND_ADDR: "1.2.3.4:70000" }, "STEMEDB_BIND_ADDR", /0\.\.65535/],
      [{ STEMEDB_BIND_ADDR: "::1:80" }, "STEMEDB_BIND_ADDR", /\[::1\]:18180/],
      [{ STEMEDB_LOG_LEVEL: "loud" }, "STEMEDB_LOG_LEVEL", /one of trace, debug, info/],
      [{ STEMEDB_ALLOW_UWS_FALLBACK: "maybe" }, "STEMEDB_ALLOW_UWS_FALLBACK", /true\/false/],
      [{ STEMEDB_WAL_SEGMENT_BYTES: "1048577" }, "STEMEDB_WAL_SEGMENT_BYTES", /multiple of 4096/],
      [{ STEMEDB_WAL_SEGMENT_BYTES: "4096" }, "STEMEDB_WAL_SEGMENT_BYTES", /1048576/],
      [{ STEMEDB_WAL_SEGMENT_BYTES: "64MiB" }, "STEMEDB_WAL_SEGMENT_BYTES", /integer/],
      [{ STEMEDB_SHARD_QUEUE_MAX: "0" }, "STEMEDB_SHARD_QUEUE_MAX", /\[1, 1048576\]/],
      [{ STEMEDB_METRICS_PUBLIC: "2" }, "STEMEDB_METRICS_PUBLIC", /expected/],
      [{ STEMEDB_WS_MAX_INFLIGHT: "0" }, "STEMEDB_WS_MAX_INFLIGHT", /\[1, 65536\]/],
      [{ STEMEDB_SHARD_YOUNG_GEN_MB: "8" }, "STEMEDB_SHARD_YOUNG_GEN_MB", /\[16, 1024\]/],
      [{ STEMEDB_WS_MAX_CONNECTIONS: "lots" }, "STEMEDB_WS_MAX_CONNECTIONS", /integer/],
      [{ STEMEDB_WAL_DIR: "/same", STEMEDB_DB_DIR: "/same" }, "STEMEDB_WAL_DIR", /different/],
    ];
    for (const [env, variable, message] of cases) {
      const e = configError(env);
      expect(e.variable).toBe(variable);
      expect(e.message).toMatch(message);
    }
  });

  it("does not echo a malformed admin key", () => {
    const e = configError({ STEMEDB_ADMIN_KEY: "hunter2-secret" });
    expect(e.variable).toBe("STEMEDB_ADMIN_KEY");
    expect(e.message).not.toContain("hunter2");
    expect(e.message).toContain("stm_");
  });

  it("lists every variable for .env.example", () => {
    const names = CONFIG_VARS.map((v) => v.name);
    for (const n of [
      "STEMEDB_BIND_ADDR",
      "STEMEDB_DATA_DIR",
      "STEMEDB_WAL_DIR",
      "STEMEDB_DB_DIR",
      "STEMEDB_SHARDS",
      "STEMEDB_LOG_LEVEL",
      "STEMEDB_ALLOW_UWS_FALLBACK",
      "STEMEDB_ADMIN_KEY",
      "STEMEDB_WAL_SEGMENT_BYTES",
      "STEMEDB_SHARD_QUEUE_MAX",
      "STEMEDB_METRICS_PUBLIC",
      "STEMEDB_METER_ENABLED",
      "STEMEDB_APHORIA",
      "STEMEDB_WS_MAX_INFLIGHT",
      "STEMEDB_WS_MAX_CONNECTIONS",
    ]) {
      expect(names).toContain(n);
    }
    expect(new Set(names).size).toBe(names.length);
    const example = renderEnvExample();
    for (const n of names) expect(example).toContain(`#${n}=`);
  });
});
