// `npm run bench:http`: end-to-end HTTP ingest and query with wrk (C, one thread, light on
// the shared 2 cores), in one run:
//   generator ceiling (GET /ping on a bare uWS app), zero-hop floor (bare uWS route doing one
//   4 KiB write + fdatasync per request), StemeDB single-assertion ingest at c=1/16/64/256,
//   1000-assertion batches, `latest` queries, and the server's own fsync p99 from /metrics.
import { type ChildProcess, spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { api, createKey, readAdminKeyFile, startServerProcess } from "../src/cli/server_child.js";
import { benchDir, machineLine, table } from "./stats.js";
import { runWrk, type WrkResult } from "./wrk.js";

const { values: args } = parseArgs({
  options: {
    seconds: { type: "string", default: "8" },
    shards: { type: "string", default: "2" },
  },
});
const SECONDS = Number(args.seconds);
const here = path.dirname(fileURLToPath(import.meta.url));

function wrk(
  url: string,
  script: string,
  connections: number,
  env: Record<string, string>,
  seconds = SECONDS,
): WrkResult {
  return runWrk({ url, script, connections, seconds, env });
}

function row(
  what: string,
  c: number,
  r: WrkResult,
  perRequest = 1,
): Record<string, string | number> {
  const rps = r.requests / (r.duration_us / 1e6);
  return {
    what,
    c,
    "req/s": Math.round(rps),
    "assertions/s": Math.round(rps * perRequest),
    p50_ms: (r.p50_us / 1000).toFixed(3),
    p99_ms: (r.p99_us / 1000).toFixed(3),
    p999_ms: (r.p999_us / 1000).toFixed(3),
    errors: r.socket_errors + r.non2xx,
  };
}

/** Waits (at most 60 s) until every shard has checkpointed everything it acknowledged. */
async function untilCheckpointed(baseUrl: string): Promise<void> {
  for (let i = 0; i < 600; i++) {
    // A pooled connection the server closed while wrk ran fails once: ask again.
    const res = await api(baseUrl, null)
      .request("GET", "/v1/health")
      .catch(() => null);
    const shards = (res?.json as { shards?: Array<{ last_lsn: number; checkpoint_lsn: number }> })
      ?.shards;
    if (shards?.every((s) => s.checkpoint_lsn >= s.last_lsn) === true) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("shards did not checkpoint within 60 s");
}

function startFloor(dir: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [path.join(here, "floor_server.js"), dir], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    child.stdout?.on("data", (d: Buffer) => {
      const m = /FLOOR_PORT (\d+)/.exec(d.toString());
      if (m !== null) resolve({ child, port: Number(m[1]) });
    });
    child.once("exit", (code) => reject(new Error(`floor server exited ${code}`)));
  });
}

/** p99 from a Prometheus histogram's cumulative buckets summed over all label sets. */
function histogramP99Ms(metricsText: string, family: string): number {
  const buckets = new Map<number, number>();
  for (const line of metricsText.split("\n")) {
    if (!line.startsWith(`${family}_bucket{`)) continue;
    const le = /le="([^"]+)"/.exec(line)?.[1];
    const value = Number(line.slice(line.lastIndexOf(" ") + 1));
    if (le === undefined) continue;
    const bound = le === "+Inf" ? Number.POSITIVE_INFINITY : Number(le);
    buckets.set(bound, (buckets.get(bound) ?? 0) + value);
  }
  const sorted = [...buckets].sort((a, b) => a[0] - b[0]);
  const total = sorted[sorted.length - 1]?.[1] ?? 0;
  const target = total * 0.99;
  for (const [bound, count] of sorted) if (count >= target) return bound * 1000;
  return Number.NaN;
}

const root = benchDir("http");
const lines: string[] = [
  `# HTTP bench — ${machineLine(root)}`,
  "",
  `wrk ${SECONDS}s per run; server with ${args.shards} shards; same machine.`,
  "",
];
const print = (s: string) => {
  lines.push(s);
  process.stdout.write(`${s}\n`);
};

const floor = await startFloor(root);
const floorUrl = `http://127.0.0.1:${floor.port}`;
const rows: Array<Record<string, string | number>> = [];
rows.push(row("generator ceiling: GET /ping (bare uWS)", 64, wrk(floorUrl, "ping.lua", 64, {})));
const floor1 = wrk(floorUrl, "floor.lua", 1, {});
rows.push(row("zero-hop floor: bare uWS + 4 KiB write + fdatasync", 1, floor1));
rows.push(
  row("zero-hop floor: bare uWS + 4 KiB write + fdatasync", 64, wrk(floorUrl, "floor.lua", 64, {})),
);
floor.child.kill("SIGKILL");

const dataDir = path.join(root, "data");
fs.mkdirSync(dataDir);
const server = await startServerProcess({
  dataDir,
  shards: Number(args.shards),
  env: { STEMEDB_WAL_SEGMENT_BYTES: String(64 * 1024 * 1024) },
});
const url = server.baseUrl;
const key = await createKey(url, readAdminKeyFile(dataDir), "agent", "bench-agent");
let c1: WrkResult | null = null;
for (const c of [1, 16, 64, 256]) {
  const r = wrk(url, "assert.lua", c, { STEMEDB_KEY: key, STEMEDB_RUN: `s${c}` });
  if (c === 1) c1 = r;
  rows.push(row("StemeDB POST /v1/assert, 1 assertion", c, r));
}
for (const c of [2, 8]) {
  rows.push(
    row(
      "StemeDB POST /v1/assert, 1000-assertion batch",
      c,
      wrk(url, "batch.lua", c, { STEMEDB_KEY: key, STEMEDB_RUN: `b${c}` }),
      1000,
    ),
  );
}
// Reads on a settled store: the batches leave up to 100k records per shard to commit and
// checkpoint, which would otherwise run under the first read rows.
await untilCheckpointed(url);
const metrics = (
  await api(url, null)
    .request("GET", "/metrics")
    .catch(() => api(url, null).request("GET", "/metrics"))
).text;
await server.stop();
// Reads on the written data, each way on a freshly started server (so neither inherits the
// write phase's heap): from the main thread's LMDB snapshot, then through the shard threads
// (STEMEDB_SNAPSHOT_READS=false), then the snapshot again, all in this run.
const latestEnv = { STEMEDB_KEY: key, STEMEDB_READ_RUN: "s1", STEMEDB_READ_CONCEPTS: "1000" };
for (const [label, snapshotReads] of [
  ["snapshot reads", "true"],
  ["via the shard threads", "false"],
  ["snapshot reads, again", "true"],
] as const) {
  const reader = await startServerProcess({
    dataDir,
    env: {
      STEMEDB_WAL_SEGMENT_BYTES: String(64 * 1024 * 1024),
      STEMEDB_SNAPSHOT_READS: snapshotReads,
    },
  });
  for (const c of [1, 8, 16, 64]) {
    rows.push(
      row(
        `StemeDB GET /v1/query lens=latest (${label})`,
        c,
        wrk(reader.baseUrl, "latest.lua", c, latestEnv),
      ),
    );
  }
  await reader.stop();
}
fs.rmSync(root, { recursive: true, force: true });

print(table(rows));
if (c1 !== null) {
  print("");
  print(
    `Concurrency 1 vs zero-hop floor (same run): p50 ${(c1.p50_us / floor1.p50_us).toFixed(2)}x, p99 ${(c1.p99_us / floor1.p99_us).toFixed(2)}x.`,
  );
}
print(
  `Server-side WAL fsync p99 over the whole run (from /metrics histogram buckets): <= ${histogramP99Ms(metrics, "stemedb_wal_fsync_latency_seconds").toFixed(3)} ms.`,
);
fs.mkdirSync("bench/results", { recursive: true });
fs.writeFileSync("bench/results/http_bench.md", `${lines.join("\n")}\n`);
