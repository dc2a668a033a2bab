// StemeDB for `bench:peers`: the real server (2 shards by default) on loopback, driven by wrk
// with the Lua scripts in bench/wrk/ (client-side latency, like the in-process peers' own
// clients): assert.lua for single assertions, batch.lua for 1000-assertion batches,
// latest.lua for `latest` lens reads.
import fs from "node:fs";
import path from "node:path";
import {
  api,
  createKey,
  readAdminKeyFile,
  startServerProcess,
} from "../../src/cli/server_child.js";
import { runWrk, type WrkResult } from "../wrk.js";
import type { CellResult } from "./driver.js";
import { BATCH_RECORDS, type PeerSystem, READ_RUN } from "./system.js";

function fromWrk(r: WrkResult, perRequest: number): CellResult {
  return {
    records: r.requests * perRequest,
    commits: r.requests,
    seconds: r.duration_us / 1e6,
    p50_ms: r.p50_us / 1000,
    p99_ms: r.p99_us / 1000,
    errors: r.socket_errors + r.non2xx,
  };
}

export async function startStemeDb(root: string, shards: number): Promise<PeerSystem> {
  const dataDir = path.join(root, "stemedb");
  fs.mkdirSync(dataDir);
  const server = await startServerProcess({
    dataDir,
    shards,
    env: { STEMEDB_WAL_SEGMENT_BYTES: String(64 * 1024 * 1024) },
  });
  try {
    const url = server.baseUrl;
    const key = await createKey(url, readAdminKeyFile(dataDir), "agent", "bench-agent");
    const wrk = (script: string, c: number, seconds: number, env: Record<string, string>) =>
      runWrk({ url, script, connections: c, seconds, env: { STEMEDB_KEY: key, ...env } });
    return {
      name: "StemeDB",
      mode: `HTTP POST /v1/assert on loopback, ${shards} shards, wrk`,
      singleConcurrency: null,
      singles: async (c, seconds) =>
        fromWrk(wrk("assert.lua", c, seconds, { STEMEDB_RUN: `s${c}` }), 1),
      batches: async (c, seconds) =>
        fromWrk(wrk("batch.lua", c, seconds, { STEMEDB_RUN: `b${c}` }), BATCH_RECORDS),
      reads: {
        mode: "GET /v1/query lens=latest, wrk",
        concurrency: null,
        seed: async (concepts, versions) => {
          const client = api(url, key);
          for (let v = 0; v < versions; v++) {
            for (let from = 1; from <= concepts; from += BATCH_RECORDS) {
              const assertions: Array<{ concept: string; value: number; confidence: number }> = [];
              for (let slot = from; slot < Math.min(concepts + 1, from + BATCH_RECORDS); slot++) {
                assertions.push({
                  concept: `bench/${READ_RUN}/t0/c${slot}`,
                  value: v * concepts + slot,
                  confidence: 0.5,
                });
              }
              const res = await client.request("POST", "/v1/assert", { assertions });
              if (res.status >= 300) throw new Error(`seed failed: ${res.status} ${res.text}`);
            }
          }
        },
        run: async (c, seconds, concepts) =>
          fromWrk(
            wrk("latest.lua", c, seconds, {
              STEMEDB_READ_RUN: READ_RUN,
              STEMEDB_READ_CONCEPTS: String(concepts),
            }),
            1,
          ),
      },
      stop: async () => {
        await server.stop();
      },
    };
  } catch (err) {
    await server.stop();
    throw err;
  }
}
