// `npm run bench:backup`: backup and restore throughput (MB/s, records/s) and the ingest
// throughput/p99 while a backup runs, as a ratio to ingest without one, in one run.
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { backupAndWait } from "../src/cli/backup.js";
import { runRestore } from "../src/cli/restore.js";
import { api, createKey, readAdminKeyFile, startServerProcess } from "../src/cli/server_child.js";
import { benchDir, machineLine, table } from "./stats.js";
import { requestsPerSecond, runWrk } from "./wrk.js";

const { values: args } = parseArgs({
  options: {
    records: { type: "string", default: "200000" },
    seconds: { type: "string", default: "6" },
  },
});
const RECORDS = Number(args.records);
const SECONDS = Number(args.seconds);

function wrk(url: string, key: string, run: string): { rps: number; p99_ms: number } {
  const r = runWrk({
    url,
    script: "assert.lua",
    connections: 64,
    seconds: SECONDS,
    env: { STEMEDB_KEY: key, STEMEDB_RUN: run },
  });
  return { rps: requestsPerSecond(r), p99_ms: r.p99_us / 1000 };
}

const root = benchDir("backup");
const machine = machineLine(root);
const dataDir = path.join(root, "data");
fs.mkdirSync(dataDir);
const server = await startServerProcess({
  dataDir,
  env: { STEMEDB_WAL_SEGMENT_BYTES: String(64 * 1024 * 1024) },
});
const admin = readAdminKeyFile(dataDir);
const key = await createKey(server.baseUrl, admin, "agent", "bench-agent");
const agent = api(server.baseUrl, key);
for (let i = 0; i < RECORDS; i += 1000) {
  const assertions = Array.from({ length: 1000 }, (_, k) => ({
    concept: `prefill/c${(i + k) % 50_000}`,
    value: i + k,
    confidence: 0.5,
  }));
  const res = await agent.request("POST", "/v1/assert", { assertions });
  if (res.status !== 201) throw new Error(`prefill failed: ${res.status} ${res.text}`);
}

const quiet = wrk(server.baseUrl, key, "quiet");
const backupDir = path.join(root, "backup");
const started = Date.now();
const backup = backupAndWait(server.baseUrl, admin, backupDir);
const during = wrk(server.baseUrl, key, "during");
const b = await backup;
const backupWallMs = Date.now() - started;
await server.stop();

const restoredDir = path.join(root, "restored");
const restoreStarted = Date.now();
if ((await runRestore(["--from", backupDir, "--data-dir", restoredDir, "--json"])) !== 0)
  throw new Error("restore failed");
const restoreMs = Date.now() - restoreStarted;
const startStarted = Date.now();
const restored = await startServerProcess({ dataDir: restoredDir });
const replayStartMs = Date.now() - startStarted;
await restored.stop();
fs.rmSync(root, { recursive: true, force: true });

const mb = b.bytes / 1e6;
const rows = [
  {
    what: "backup (online, during wrk c=64)",
    MB: mb.toFixed(1),
    ms: b.duration_ms,
    "MB/s": (mb / (b.duration_ms / 1000)).toFixed(1),
    "records/s": Math.round(RECORDS / (b.duration_ms / 1000)),
  },
  {
    what: "restore (verify SHA-256 + copy + fsync)",
    MB: mb.toFixed(1),
    ms: restoreMs,
    "MB/s": (mb / (restoreMs / 1000)).toFixed(1),
    "records/s": Math.round(RECORDS / (restoreMs / 1000)),
  },
  {
    what: "first start after restore (WAL replay)",
    MB: "",
    ms: replayStartMs,
    "MB/s": "",
    "records/s": "",
  },
];
const ingest = [
  {
    what: "ingest c=64 without backup",
    "req/s": Math.round(quiet.rps),
    p99_ms: quiet.p99_ms.toFixed(2),
  },
  {
    what: "ingest c=64 while a backup runs",
    "req/s": Math.round(during.rps),
    p99_ms: during.p99_ms.toFixed(2),
  },
];
const text = `# backup bench — ${machine}\n\n${RECORDS} prefilled assertions; backup request wall time ${backupWallMs} ms.\n\n${table(rows)}\n\n${table(ingest)}\n\nThroughput ratio during backup: ${(during.rps / quiet.rps).toFixed(2)} (target >= 0.8).\n`;
process.stdout.write(text);
fs.mkdirSync("bench/results", { recursive: true });
fs.writeFileSync("bench/results/backup_bench.md", text);
