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
import { runSequential, type SequentialResult } from "./seq_client.js";
import { benchDir, machineLine, percentile, table } from "./stats.js";
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
    // wrk's coordinated-omission-corrected p99 (bench/wrk.ts), for comparison with old runs.
    "p99_ms (wrk CO)": (r.co_p99_us / 1000).toFixed(3),
    "Σ latency ÷ (run × c)": r.busy_share.toFixed(2),
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

/** A Prometheus histogram's cumulative bucket counts by upper bound, summed over label sets. */
function histogramBuckets(metricsText: string, family: string): Map<number, number> {
  const buckets = new Map<number, number>();
  for (const line of metricsText.split("\n")) {
    if (!line.startsWith(`${family}_bucket{`)) continue;
    const le = /le="([^"]+)"/.exec(line)?.[1];
    const value = Number(line.slice(line.lastIndexOf(" ") + 1));
    if (le === undefined) continue;
    const bound = le === "+Inf" ? Number.POSITIVE_INFINITY : Number(le);
    buckets.set(bound, (buckets.get(bound) ?? 0) + value);
  }
  return buckets;
}

/**
 * The p99 (ms) of the observations made between two scrapes (`before` null: since the start),
 * interpolated within its bucket as PromQL's histogram_quantile does (so it matches the
 * dashboards); NaN if there were none.
 */
function histogramP99Ms(
  after: Map<number, number>,
  before: Map<number, number> | null = null,
): number {
  const sorted = [...after]
    .map(([bound, count]): [number, number] => [bound, count - (before?.get(bound) ?? 0)])
    .sort((a, b) => a[0] - b[0]);
  const total = sorted[sorted.length - 1]?.[1] ?? 0;
  if (total <= 0) return Number.NaN;
  const rank = total * 0.99;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const [bound, count] of sorted) {
    if (count >= rank) {
      // In the +Inf bucket: the highest finite bound, as histogram_quantile answers.
      if (bound === Number.POSITIVE_INFINITY) return lowerBound * 1000;
      const share = count === lowerCount ? 1 : (rank - lowerCount) / (count - lowerCount);
      return (lowerBound + (bound - lowerBound) * share) * 1000;
    }
    lowerBound = bound;
    lowerCount = count;
  }
  return Number.NaN;
}

const FSYNC_FAMILY = "stemedb_wal_fsync_latency_seconds";

async function scrapeMetrics(baseUrl: string): Promise<string> {
  // A pooled connection the server closed while wrk ran fails once: ask again.
  const res = await api(baseUrl, null)
    .request("GET", "/metrics")
    .catch(() => api(baseUrl, null).request("GET", "/metrics"));
  return res.text;
}

/** One wrk run against the server, with the server's WAL fsync p99 over just that run. */
async function serverRow(
  what: string,
  c: number,
  baseUrl: string,
  run: () => WrkResult,
  perRequest = 1,
): Promise<{ row: Record<string, string | number>; result: WrkResult }> {
  const before = histogramBuckets(await scrapeMetrics(baseUrl), FSYNC_FAMILY);
  const result = run();
  const after = histogramBuckets(await scrapeMetrics(baseUrl), FSYNC_FAMILY);
  const p99Ms = histogramP99Ms(after, before);
  return {
    row: {
      ...row(what, c, result, perRequest),
      "server fsync p99_ms": Number.isNaN(p99Ms) ? "n/a" : p99Ms.toFixed(3),
    },
    result,
  };
}

/** A complete keep-alive HTTP/1.1 request. */
function httpRequest(
  method: string,
  target: string,
  key: string | null,
  body: string | null,
): Buffer {
  const head = [`${method} ${target} HTTP/1.1`, "Host: 127.0.0.1"];
  if (key !== null) head.push(`Authorization: Bearer ${key}`);
  if (body !== null)
    head.push("Content-Type: application/json", `Content-Length: ${Buffer.byteLength(body)}`);
  return Buffer.from(`${head.join("\r\n")}\r\n\r\n${body ?? ""}`);
}

const SEQ_WARMUP = 500;
const SEQ_COUNT = 5000;
function sequential(port: number, request: (i: number) => Buffer): Promise<SequentialResult> {
  return runSequential({ host: "127.0.0.1", port, request, warmup: SEQ_WARMUP, count: SEQ_COUNT });
}

/** The latencies of a sequential run, sorted (for stats.ts percentile). */
function sortedMs(r: SequentialResult): Float64Array {
  return Float64Array.from(r.latenciesMs).sort();
}

function seqRow(what: string, r: SequentialResult): Record<string, string | number> {
  let sumMs = 0;
  for (const v of r.latenciesMs) sumMs += v;
  const sorted = sortedMs(r);
  return {
    what,
    "req/s": Math.round(r.latenciesMs.length / (r.durationMs / 1000)),
    p50_ms: percentile(sorted, 50).toFixed(3),
    p99_ms: percentile(sorted, 99).toFixed(3),
    p999_ms: percentile(sorted, 99.9).toFixed(3),
    // ≤ 1 at concurrency 1: the share of the run spent waiting for answers.
    "Σ latency ÷ run": (sumMs / r.durationMs).toFixed(2),
    errors: r.non2xx,
  };
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
const floorSeq = await sequential(floor.port, () => httpRequest("POST", "/floor", null, '{"x":1}'));
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
  const { row: r, result } = await serverRow("StemeDB POST /v1/assert, 1 assertion", c, url, () =>
    wrk(url, "assert.lua", c, { STEMEDB_KEY: key, STEMEDB_RUN: `s${c}` }),
  );
  if (c === 1) c1 = result;
  rows.push(r);
}
const writeSeq = await sequential(server.port, (i) =>
  httpRequest(
    "POST",
    "/v1/assert",
    key,
    `{"concept":"bench/seq/c${i % 10000}","value":${i},"confidence":0.5,"sources":["seq"]}`,
  ),
);
for (const c of [2, 8]) {
  const { row: r } = await serverRow(
    "StemeDB POST /v1/assert, 1000-assertion batch",
    c,
    url,
    () => wrk(url, "batch.lua", c, { STEMEDB_KEY: key, STEMEDB_RUN: `b${c}` }),
    1000,
  );
  rows.push(r);
}
// Reads on a settled store: the batches leave up to 100k records per shard to commit and
// checkpoint, which would otherwise run under the first read rows.
await untilCheckpointed(url);
const metrics = await scrapeMetrics(url);
await server.stop();
// Reads on the written data, each way on a freshly started server (so neither inherits the
// write phase's heap): from the main thread's LMDB snapshot, then through the shard threads
// (STEMEDB_SNAPSHOT_READS=false), then the snapshot again, all in this run.
const latestEnv = { STEMEDB_KEY: key, STEMEDB_READ_RUN: "s1", STEMEDB_READ_CONCEPTS: "1000" };
let readSeq: SequentialResult | null = null;
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
  // The same reads as latest.lua (thread 0's concepts of the c=1 write run), one at a time.
  readSeq ??= await sequential(reader.port, (i) =>
    httpRequest(
      "GET",
      `/v1/query?concept=bench/s1/t0/c${((i * 7919) % 1000) + 1}&lens=latest`,
      key,
      null,
    ),
  );
  await reader.stop();
}
fs.rmSync(root, { recursive: true, force: true });

print(table(rows));
print("");
print(
  "Latencies are the measured ack latencies: bench/wrk/common.lua undoes wrk's coordinated-omission correction (its column is kept for comparison with runs before 2026-12-07 12:00).",
);
if (c1 !== null) {
  print("");
  print(
    `Concurrency 1 vs zero-hop floor (same run): p50 ${(c1.p50_us / floor1.p50_us).toFixed(2)}x, p99 ${(c1.p99_us / floor1.p99_us).toFixed(2)}x.`,
  );
}
print("");
print(
  `Concurrency 1 with one sequential keep-alive connection (bench/seq_client.ts; ${SEQ_COUNT} requests after ${SEQ_WARMUP}):`,
);
print("");
const seqRows = [
  seqRow("zero-hop floor: bare uWS + 4 KiB write + fdatasync", floorSeq),
  seqRow("StemeDB POST /v1/assert, 1 assertion", writeSeq),
];
if (readSeq !== null)
  seqRows.push(seqRow("StemeDB GET /v1/query lens=latest (snapshot reads)", readSeq));
print(table(seqRows));
print("");
const writeSorted = sortedMs(writeSeq);
const floorSorted = sortedMs(floorSeq);
print(
  `Writes vs the floor, same client and run: p50 ${(percentile(writeSorted, 50) / percentile(floorSorted, 50)).toFixed(2)}x, p99 ${(percentile(writeSorted, 99) / percentile(floorSorted, 99)).toFixed(2)}x.`,
);
print(
  `Server-side WAL fsync p99 over the whole run (/metrics buckets, interpolated as histogram_quantile does): ${histogramP99Ms(histogramBuckets(metrics, FSYNC_FAMILY)).toFixed(3)} ms.`,
);
fs.mkdirSync("bench/results", { recursive: true });
fs.writeFileSync("bench/results/http_bench.md", `${lines.join("\n")}\n`);
