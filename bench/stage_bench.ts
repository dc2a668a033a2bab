// `npm run bench:stages`: where a single-assertion write's time goes, stage by stage
// (STEMEDB_STAGE_TRACE, src/metrics/stage_trace.ts), at concurrency 1, 16 and 64 under wrk;
// and what the trace itself costs: at each concurrency, alternating servers without and with
// the trace, two rounds, on a fresh data directory each.
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { createKey, readAdminKeyFile, startServerProcess } from "../src/cli/server_child.js";
import type { StageSummary } from "../src/metrics/stage_trace.js";
import { benchDir, machineLine, table } from "./stats.js";
import { requestsPerSecond, runWrk, type WrkResult } from "./wrk.js";

const { values: args } = parseArgs({
  options: {
    seconds: { type: "string", default: "8" },
    shards: { type: "string", default: "2" },
    rounds: { type: "string", default: "2" },
  },
});
const SECONDS = Number(args.seconds);
const WARMUP_SECONDS = 2;
const CONCURRENCIES = [1, 16, 64] as const;
/** Ring size per concurrency: below the measured run's request count, so warm-up is pushed out. */
const TRACE_ROWS: Record<(typeof CONCURRENCIES)[number], number> = {
  1: 3_000,
  16: 20_000,
  64: 40_000,
};

interface Run {
  wrk: WrkResult;
  summary: StageSummary | null;
}

async function runOnce(
  root: string,
  c: (typeof CONCURRENCIES)[number],
  traced: boolean,
): Promise<Run> {
  const dataDir = path.join(root, `data-c${c}-${traced ? "on" : "off"}-${Date.now()}`);
  fs.mkdirSync(dataDir);
  const server = await startServerProcess({
    dataDir,
    shards: Number(args.shards),
    env: {
      STEMEDB_WAL_SEGMENT_BYTES: String(64 * 1024 * 1024),
      STEMEDB_LOG_LEVEL: "info",
      ...(traced ? { STEMEDB_STAGE_TRACE: String(TRACE_ROWS[c]) } : {}),
    },
  });
  try {
    const key = await createKey(server.baseUrl, readAdminKeyFile(dataDir), "agent", "bench-agent");
    const env = { STEMEDB_KEY: key };
    const wrkRun = (run: string, seconds: number) =>
      runWrk({
        url: server.baseUrl,
        script: "assert.lua",
        connections: c,
        seconds,
        env: { ...env, STEMEDB_RUN: run },
      });
    wrkRun(`w${c}`, WARMUP_SECONDS);
    const measured = wrkRun(`m${c}`, SECONDS);
    const code = await server.stop();
    if (code !== 0) throw new Error(`server exited with ${code}`);
    const line = server.stdout.find((l) => l.includes('"write stages"'));
    const summary =
      line === undefined ? null : (JSON.parse(line) as { stage_trace: StageSummary }).stage_trace;
    return { wrk: measured, summary };
  } finally {
    await server.kill9();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

const root = benchDir("stages");
const lines: string[] = [
  `# Write stages — ${machineLine(root)}`,
  "",
  `wrk ${SECONDS} s per run after ${WARMUP_SECONDS} s of warm-up at the same concurrency; POST /v1/assert, one assertion; server with ${args.shards} shards; same machine.`,
  "",
];
const print = (s: string) => {
  lines.push(s);
  process.stdout.write(`${s}\n`);
};

const costRows: Array<Record<string, string | number>> = [];
for (const c of CONCURRENCIES) {
  let last: Run | null = null;
  for (let round = 1; round <= Number(args.rounds); round++) {
    const off = await runOnce(root, c, false);
    const on = await runOnce(root, c, true);
    const offRps = requestsPerSecond(off.wrk);
    const onRps = requestsPerSecond(on.wrk);
    costRows.push({
      c,
      round,
      "req/s without trace": Math.round(offRps),
      "req/s with trace": Math.round(onRps),
      "with ÷ without": (onRps / offRps).toFixed(2),
      "p50 ms without / with": `${(off.wrk.p50_us / 1000).toFixed(3)} / ${(on.wrk.p50_us / 1000).toFixed(3)}`,
      "p99 ms without / with": `${(off.wrk.p99_us / 1000).toFixed(3)} / ${(on.wrk.p99_us / 1000).toFixed(3)}`,
    });
    last = on;
  }
  const summary = last?.summary ?? null;
  print(`## c=${c}`);
  print("");
  if (summary === null) {
    print("(no stage summary was logged)");
    print("");
    continue;
  }
  print(
    `Last traced run: ${summary.requests} complete rows (the most recent ${TRACE_ROWS[c]} requests of ${last?.wrk.requests} measured), ${summary.out_of_order} out of order.`,
  );
  print("");
  print(
    table(
      summary.stages.map((s) => ({
        stage: s.stage,
        min_us: s.min_us,
        mean_us: s.mean_us,
        p50_us: s.p50_us,
        p99_us: s.p99_us,
        max_us: s.max_us,
      })),
    ),
  );
  print("");
}
print("## What the trace costs (alternating servers, same run)");
print("");
print(table(costRows));
fs.rmSync(root, { recursive: true, force: true });
fs.mkdirSync("bench/results", { recursive: true });
fs.writeFileSync("bench/results/stage_bench.md", `${lines.join("\n")}\n`);
