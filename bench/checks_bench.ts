// `npm run bench:checks`: the write path with the quarantine checks (gold standard, trust,
// circuit-breaker probation) on vs off (STEMEDB_WRITE_CHECKS), at equal durability. Each
// round starts a fresh server; rounds alternate on/off so drift of this VM's disk hits both.
// With checks on, 1,000 gold standards exist (on concepts the load does not write) so the
// lookups run against a populated table, and every write is checked.
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { api, createKey, readAdminKeyFile, startServerProcess } from "../src/cli/server_child.js";
import { benchDir, machineLine, table } from "./stats.js";
import { requestsPerSecond, runWrk } from "./wrk.js";

const { values: args } = parseArgs({
  options: {
    seconds: { type: "string", default: "10" },
    rounds: { type: "string", default: "2" },
    c: { type: "string", default: "64" },
    shards: { type: "string", default: "2" },
    out: { type: "string", default: "bench/results/checks_bench.md" },
  },
});
const SECONDS = Number(args.seconds);
const C = Number(args.c);
const root = benchDir("checks");
const rows: Array<Record<string, string | number>> = [];
const totals = { on: 0, off: 0 };

async function round(checks: "on" | "off", n: number): Promise<void> {
  const dataDir = path.join(root, `${checks}-${n}`);
  fs.mkdirSync(dataDir);
  const server = await startServerProcess({
    dataDir,
    shards: Number(args.shards),
    env: { STEMEDB_WRITE_CHECKS: checks },
  });
  const admin = readAdminKeyFile(dataDir);
  if (checks === "on") {
    for (let i = 0; i < 1000; i++) {
      const r = await api(server.baseUrl, admin).request("POST", "/v1/gold_standard", {
        concept: `gold/c${i}`,
        value: i,
      });
      if (r.status !== 201) throw new Error(`gold: ${r.status} ${r.text}`);
    }
  }
  const key = await createKey(server.baseUrl, admin, "agent", "bench-agent");
  // Batches of 1,000 at 8 connections: 64 would exceed the shard queue bound (503 by design).
  for (const [script, label, connections] of [
    ["assert.lua", "single", C],
    ["batch.lua", "batch", 8],
  ] as const) {
    const r = runWrk({
      url: server.baseUrl,
      script,
      connections,
      seconds: SECONDS,
      env: { STEMEDB_KEY: key, STEMEDB_RUN: `${checks}${n}${label}` },
    });
    if (r.non2xx > 0) throw new Error(`${checks} ${label}: ${r.non2xx} non-2xx answers`);
    const perSecond = requestsPerSecond(r);
    if (label === "single") totals[checks] += perSecond;
    rows.push({
      round: n,
      checks,
      load: label,
      c: connections,
      "req/s": Math.round(perSecond),
      "p50 ms": (r.p50_us / 1000).toFixed(3),
      "p99 ms": (r.p99_us / 1000).toFixed(3),
    });
  }
  await server.stop();
}

for (let n = 1; n <= Number(args.rounds); n++) {
  await round(n % 2 === 1 ? "on" : "off", n);
  await round(n % 2 === 1 ? "off" : "on", n);
}
const ratio = totals.on / totals.off;
const lines = [
  "# Write-path checks on vs off",
  "",
  machineLine(root),
  "",
  `Command: npm run bench:checks -- --seconds ${SECONDS} --rounds ${args.rounds} --c ${C} --shards ${args.shards} (wrk bench/wrk/assert.lua at c, batch.lua (1,000 per request) at c=8; fresh server per round).`,
  "",
  table(rows),
  "",
  `Single-assertion throughput, checks on / off (sum over rounds): ${ratio.toFixed(3)} (target >= 0.9: ${ratio >= 0.9 ? "met" : "not met"}).`,
];
fs.rmSync(root, { recursive: true, force: true });
const text = lines.join("\n");
process.stdout.write(`${text}\n`);
fs.mkdirSync(path.dirname(args.out as string), { recursive: true });
fs.writeFileSync(args.out as string, `${text}\n`);
