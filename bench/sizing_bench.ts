// `npm run bench:sizing`: the measured basis of `stemedb sizing`. For each shard count (fresh
// data directory each) runs single-assertion ingest with wrk (bench/wrk/assert.lua, c=64)
// and derives per-unit costs from the server's own counters scraped before and after:
//   CPU seconds per acknowledged assertion in the main thread and in each shard thread
//   (stemedb_thread_cpu_seconds_total), whole-process CPU per assertion (/proc/<pid>/stat
//   utime+stime: includes the libuv pool and lmdb's writer thread, which the per-thread
//   metric does not cover), fsyncs/s and records per fsync (stemedb_wal_* histograms).
// Writes bench/results/sizing.json (read by `stemedb sizing --basis`) and sizing.md.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { api, createKey, readAdminKeyFile, startServerProcess } from "../src/cli/server_child.js";
import type { SizingBasis, SizingRow } from "../src/cli/sizing.js";
import { benchDir, machineLine, table } from "./stats.js";
import { runWrk, type WrkResult } from "./wrk.js";

const { values: args } = parseArgs({
  options: {
    seconds: { type: "string", default: "5" },
    shards: { type: "string", default: "1,2,4,8" },
    connections: { type: "string", default: "64" },
    "warmup-seconds": { type: "string", default: "1" },
  },
});
const SECONDS = Number(args.seconds);
const WARMUP_SECONDS = Number(args["warmup-seconds"]);
const CONNECTIONS = Number(args.connections);
const SHARD_COUNTS = (args.shards ?? "").split(",").map(Number);
if (!(SECONDS > 0 && SECONDS <= 600) || !(WARMUP_SECONDS >= 0 && WARMUP_SECONDS <= 60)) {
  throw new Error("--seconds must be in (0, 600] and --warmup-seconds in [0, 60]");
}
if (!(Number.isInteger(CONNECTIONS) && CONNECTIONS >= 1 && CONNECTIONS <= 4096)) {
  throw new Error("--connections must be an integer in [1, 4096]");
}
if (
  SHARD_COUNTS.length === 0 ||
  !SHARD_COUNTS.every((n) => Number.isInteger(n) && n >= 1 && n <= 64)
) {
  throw new Error("--shards must be a comma-separated list of integers in [1, 64]");
}
const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;

function wrk(url: string, env: Record<string, string>, seconds: number): WrkResult {
  return runWrk({ url, script: "assert.lua", connections: CONNECTIONS, seconds, env });
}

/** Samples of one metric family (exact name), with their label text. */
function samples(text: string, name: string): Array<{ labels: string; value: number }> {
  const found: Array<{ labels: string; value: number }> = [];
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== "{" && rest[0] !== " ") continue;
    const labels = rest[0] === "{" ? rest.slice(1, rest.indexOf("}")) : "";
    found.push({ labels, value: Number(line.slice(line.lastIndexOf(" ") + 1)) });
  }
  return found;
}

function metricSum(text: string, name: string, labelMatch = ""): number {
  return samples(text, name)
    .filter((s) => s.labels.includes(labelMatch))
    .reduce((a, s) => a + s.value, 0);
}

/** utime + stime of the whole process (all threads), seconds. */
function processCpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // After the command name: field 3 (state) is index 0, so utime (14) is 11 and stime (15) 12.
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

async function measure(shards: number, root: string): Promise<SizingRow> {
  const dataDir = path.join(root, `data-${shards}`);
  fs.mkdirSync(dataDir);
  const server = await startServerProcess({
    dataDir,
    shards,
    env: { STEMEDB_WAL_SEGMENT_BYTES: String(64 * 1024 * 1024) },
  });
  try {
    const pid = server.child.pid;
    if (pid === undefined) throw new Error("server has no pid");
    const url = server.baseUrl;
    const key = await createKey(url, readAdminKeyFile(dataDir), "agent", "sizing-bench");
    // Warm-up (JIT, first segment writes) outside the measured window.
    if (WARMUP_SECONDS > 0)
      wrk(url, { STEMEDB_KEY: key, STEMEDB_RUN: `w${shards}` }, WARMUP_SECONDS);
    const scrape = async () => (await api(url, null).request("GET", "/metrics")).text;
    const before = await scrape();
    const cpuBefore = processCpuSeconds(pid);
    const r = wrk(url, { STEMEDB_KEY: key, STEMEDB_RUN: `s${shards}` }, SECONDS);
    const cpuAfter = processCpuSeconds(pid);
    const after = await scrape();
    const seconds = r.duration_us / 1e6;
    const acked = r.requests - r.non2xx;
    if (acked <= 0) throw new Error(`no acknowledged requests at ${shards} shards`);
    const delta = (name: string, label = "") =>
      metricSum(after, name, label) - metricSum(before, name, label);
    const cpu = "stemedb_thread_cpu_seconds_total";
    const fsyncs = delta("stemedb_wal_fsync_latency_seconds_count");
    const batchRecords = delta("stemedb_wal_batch_size_sum");
    const batches = delta("stemedb_wal_batch_size_count");
    const perShard: number[] = [];
    for (let i = 0; i < shards; i++) perShard.push(delta(cpu, `thread="shard_${i}"`) / acked);
    return {
      shards,
      seconds,
      acknowledged: acked,
      assertions_per_s: acked / seconds,
      p50_ms: r.p50_us / 1000,
      p99_ms: r.p99_us / 1000,
      errors: r.socket_errors + r.non2xx,
      main_cpu_s_per_assertion: delta(cpu, 'thread="main"') / acked,
      shard_cpu_s_per_assertion: perShard,
      process_cpu_s_per_assertion: (cpuAfter - cpuBefore) / acked,
      fsyncs_per_s: fsyncs / seconds,
      records_per_fsync: batches > 0 ? batchRecords / batches : 0,
    };
  } finally {
    await server.stop();
  }
}

const root = benchDir("sizing");
const machine = machineLine(root);
const command = `npm run bench:sizing -- --seconds ${SECONDS} --shards ${SHARD_COUNTS.join(",")} --connections ${CONNECTIONS} --warmup-seconds ${WARMUP_SECONDS}`;
const rows: SizingRow[] = [];
try {
  for (const n of SHARD_COUNTS) {
    const row = await measure(n, root);
    rows.push(row);
    process.stdout.write(
      `shards=${n}: ${Math.round(row.assertions_per_s)} assertions/s, p99 ${row.p99_ms.toFixed(2)} ms\n`,
    );
  }
} finally {
  fs.rmSync(root, { recursive: true, force: true });
}

const us = (s: number) => (s * 1e6).toFixed(1);
const tableRows = rows.map((r) => ({
  shards: r.shards,
  "assertions/s": Math.round(r.assertions_per_s),
  p99_ms: r.p99_ms.toFixed(2),
  "main µs/a": us(r.main_cpu_s_per_assertion),
  "each shard µs/a": r.shard_cpu_s_per_assertion.map(us).join(" / "),
  "shards sum µs/a": us(r.shard_cpu_s_per_assertion.reduce((a, b) => a + b, 0)),
  "process µs/a": us(r.process_cpu_s_per_assertion),
  "fsyncs/s": Math.round(r.fsyncs_per_s),
  "records/fsync": r.records_per_fsync.toFixed(2),
  errors: r.errors ?? 0,
}));
const basis: SizingBasis & { date: string; connections: number } = {
  machine,
  command,
  date: new Date().toISOString(),
  connections: CONNECTIONS,
  rows,
};
const md = [
  `# Sizing bench — ${machine}`,
  "",
  `Command: \`${command}\`. wrk bench/wrk/assert.lua, c=${CONNECTIONS}, ${SECONDS} s per shard count, fresh data directory each; µs/a = CPU microseconds per acknowledged assertion.`,
  "",
  table(tableRows),
  "",
].join("\n");
process.stdout.write(`\n${md}`);
fs.mkdirSync("bench/results", { recursive: true });
fs.writeFileSync("bench/results/sizing.json", `${JSON.stringify(basis, null, 2)}\n`);
fs.writeFileSync("bench/results/sizing.md", md);
