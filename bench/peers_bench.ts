// `npm run bench:peers`: the same workload against StemeDB and its peers, one system after
// another on the same disk, in one run:
//   - single-record durable commits at concurrency 1/16/64/256 and 1000-record batches;
//   - the point lookup of a concept's latest record (StemeDB `latest` lens vs an indexed
//     SELECT in PostgreSQL and SQLite);
// with every figure also as a ratio to StemeDB's figure in the same cell. Systems: StemeDB over
// HTTP (wrk), PostgreSQL (Debian package, temporary cluster on a unix socket), SQLite
// (better-sqlite3), lmdb-js, and the raw disk floor (4 KiB O_DIRECT write + fdatasync in C).
// Everything started here is stopped in a finally (and on SIGINT/SIGTERM), temp dirs removed.
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import type { CellResult } from "./peers/driver.js";
import { startLmdb } from "./peers/lmdb.js";
import { startPostgres } from "./peers/postgres.js";
import { startRawDisk } from "./peers/raw_disk.js";
import { startSqlite } from "./peers/sqlite.js";
import { startStemeDb } from "./peers/stemedb.js";
import { BATCH_RECORDS, type PeerSystem } from "./peers/system.js";
import { benchDir, machineLine, table } from "./stats.js";

const SYSTEMS = ["stemedb", "postgres", "sqlite", "lmdb", "raw"] as const;
type SystemId = (typeof SYSTEMS)[number];
const MAX_CONCURRENCY = 1024;
const MAX_SECONDS = 600;

const { values: args } = parseArgs({
  options: {
    seconds: { type: "string", default: "5" },
    systems: { type: "string", default: SYSTEMS.join(",") },
    concurrency: { type: "string", default: "1,16,64,256" },
    "batch-concurrency": { type: "string", default: "1,4" },
    "read-concurrency": { type: "string", default: "1,16" },
    "read-concepts": { type: "string", default: "10000" },
    "read-versions": { type: "string", default: "3" },
    shards: { type: "string", default: "2" },
    out: { type: "string", default: "bench/results/peers.md" },
  },
});

function list(name: string, text: string, max: number): number[] {
  const values = text.split(",").map((s) => Number(s.trim()));
  for (const v of values) {
    if (!Number.isInteger(v) || v < 1 || v > max)
      throw new Error(`--${name}: ${v} not in 1..${max}`);
  }
  return values;
}
const SECONDS = Number(args.seconds);
if (!(SECONDS > 0 && SECONDS <= MAX_SECONDS))
  throw new Error(`--seconds must be in (0, ${MAX_SECONDS}]`);
const CONCURRENCY = list("concurrency", args.concurrency, MAX_CONCURRENCY);
const BATCH_CONCURRENCY = list("batch-concurrency", args["batch-concurrency"], MAX_CONCURRENCY);
const READ_CONCURRENCY = list("read-concurrency", args["read-concurrency"], MAX_CONCURRENCY);
const READ_CONCEPTS = list("read-concepts", args["read-concepts"], 1_000_000)[0] as number;
const READ_VERSIONS = list("read-versions", args["read-versions"], 100)[0] as number;
const SHARDS = list("shards", args.shards, 64)[0] as number;
const selected = args.systems.split(",").map((s) => s.trim()) as SystemId[];
for (const s of selected) {
  if (!SYSTEMS.includes(s))
    throw new Error(`--systems: unknown ${s} (known: ${SYSTEMS.join(",")})`);
}

const root = benchDir("peers");
const maxConcurrency = Math.max(...CONCURRENCY, ...BATCH_CONCURRENCY, ...READ_CONCURRENCY);
const starters: Record<SystemId, () => Promise<PeerSystem>> = {
  stemedb: () => startStemeDb(root, SHARDS),
  postgres: () => startPostgres(root, maxConcurrency),
  sqlite: () => startSqlite(root),
  lmdb: () => startLmdb(root),
  raw: () => startRawDisk(root),
};

interface Cell {
  system: string;
  kind: "single" | "batch" | "read";
  concurrency: number;
  result: CellResult;
}
const cells: Cell[] = [];
const modes: string[] = [];
const failures: string[] = [];
let current: PeerSystem | null = null;

async function stopCurrent(): Promise<void> {
  const system = current;
  current = null;
  if (system !== null) await system.stop();
}
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    process.stderr.write(`peers: ${signal}, stopping what was started\n`);
    void stopCurrent().finally(() => {
      fs.rmSync(root, { recursive: true, force: true });
      process.exit(130);
    });
  });
}

const allowed = (levels: readonly number[] | null, c: number) =>
  levels === null || levels.includes(c);
async function measure(
  system: PeerSystem,
  kind: Cell["kind"],
  c: number,
  run: () => Promise<CellResult>,
) {
  process.stderr.write(`peers: ${system.name} ${kind} c=${c} …\n`);
  const result = await run();
  cells.push({ system: system.name, kind, concurrency: c, result });
}

const machine = machineLine(root);
try {
  for (const id of selected) {
    try {
      process.stderr.write(`peers: starting ${id}\n`);
      current = await starters[id]();
      const system = current;
      modes.push(`- **${system.name}**: ${system.mode}`);
      for (const c of CONCURRENCY.filter((c) => allowed(system.singleConcurrency, c))) {
        await measure(system, "single", c, () => system.singles(c, SECONDS));
      }
      for (const c of BATCH_CONCURRENCY.filter((c) => allowed(system.singleConcurrency, c))) {
        await measure(system, "batch", c, () => system.batches(c, SECONDS));
      }
      const reads = system.reads;
      if (reads !== undefined) {
        modes.push(`- **${system.name}** reads: ${reads.mode}`);
        process.stderr.write(
          `peers: ${system.name} seeding ${READ_CONCEPTS} concepts × ${READ_VERSIONS}\n`,
        );
        await reads.seed(READ_CONCEPTS, READ_VERSIONS);
        for (const c of READ_CONCURRENCY.filter((c) => allowed(reads.concurrency, c))) {
          await measure(system, "read", c, () => reads.run(c, SECONDS, READ_CONCEPTS));
        }
      }
    } catch (err) {
      failures.push(`- **${id}** failed: ${err instanceof Error ? err.message : String(err)}`);
      process.stderr.write(`peers: ${id} failed: ${String(err)}\n`);
    } finally {
      await stopCurrent();
    }
  }
} finally {
  await stopCurrent();
  fs.rmSync(root, { recursive: true, force: true });
}

const fmtInt = (n: number) => Math.round(n).toLocaleString("en-US");
const fmtMs = (n: number) => (Number.isFinite(n) ? n.toFixed(3) : "");
const ratio = (value: number, base: number | undefined) =>
  base === undefined || !(base > 0) || !Number.isFinite(value)
    ? ""
    : `${(value / base).toFixed(2)}`;
function rows(kind: Cell["kind"]): Array<Record<string, string | number>> {
  const unit = kind === "read" ? "lookups/s" : "records/s";
  return cells
    .filter((cell) => cell.kind === kind)
    .map((cell) => {
      const base = cells.find(
        (b) => b.system === "StemeDB" && b.kind === kind && b.concurrency === cell.concurrency,
      )?.result;
      const r = cell.result;
      const rate = r.records / r.seconds;
      const baseRate = base === undefined ? undefined : base.records / base.seconds;
      return {
        system: cell.system,
        mode:
          kind === "batch" ? `batch of ${BATCH_RECORDS}` : kind === "read" ? "latest" : "single",
        c: cell.concurrency,
        [unit]: fmtInt(rate),
        [`${unit} ÷ StemeDB`]: ratio(rate, baseRate),
        [kind === "read" ? "p50 ms" : "commit p50 ms"]: fmtMs(r.p50_ms),
        "p50 ÷ StemeDB": ratio(r.p50_ms, base?.p50_ms),
        [kind === "read" ? "p99 ms" : "commit p99 ms"]: fmtMs(r.p99_ms),
        "p99 ÷ StemeDB": ratio(r.p99_ms, base?.p99_ms),
        errors: r.errors,
      };
    });
}

const command = `npm run bench:peers -- ${process.argv.slice(2).join(" ")}`.trim();
const out: string[] = [
  `# Peers bench — ${machine}`,
  "",
  `Command: \`${command}\` (${SECONDS} s per cell; systems run one after another on the same disk).`,
  "Ratios are the system's figure divided by StemeDB's figure in the same cell (same mode and c).",
  "",
  ...modes,
  ...(failures.length > 0 ? ["", "Failures:", ...failures] : []),
  "",
  "## Durable writes (150-byte records, 16-byte ids)",
  "",
  table([...rows("single"), ...rows("batch")]),
  "",
  `## Point lookup: latest record of a concept (${READ_CONCEPTS} concepts × ${READ_VERSIONS} versions)`,
  "",
  table(rows("read")),
];
const text = `${out.join("\n")}\n`;
process.stdout.write(text);
fs.mkdirSync(path.dirname(args.out), { recursive: true });
fs.writeFileSync(args.out, text);
if (failures.length > 0) process.exitCode = 1;
