// `stemedb sizing --target-rate R --p99-ms L [--basis bench/results/sizing.json]`: recommends
// shard and vCPU counts from per-unit costs measured by `npm run bench:sizing` on the machine
// the basis file came from. The model is deliberately simple and printed in full, so an
// operator can check the arithmetic and see which measured figure drives the answer:
//
//   main-thread ceiling = headroom / main_cpu_s_per_assertion      (one front-door thread)
//   shards (CPU)        = ceil(R × shard_cpu_s_per_assertion / (1 core × headroom))
//   shards (disk)       = ceil(R / (disk_rate_per_shard × headroom))
//                         disk_rate_per_shard = fsyncs/s per shard × records per fsync
//   shards              = max(1, shards (CPU), shards (disk))
//   vCPUs               = 1 (main) + shards + ceil(R × rest_cpu_s_per_assertion / headroom)
//                         rest = whole-process CPU − main − shards (libuv pool, lmdb writer, GC)
//
// CPU costs are those of the measured row with the lowest whole-process CPU per assertion
// (the least oversubscribed one); the disk rate is the largest measured per shard. The p99 target is
// checked against the p99 measured at the chosen shard count (a saturation p99: wrk c=64).
import fs from "node:fs";
import { parseArgs } from "node:util";
import { EXIT_OK, out, parseOrUsage, printJson, UsageError } from "./args.js";

export const DEFAULT_BASIS = "bench/results/sizing.json";
export const DEFAULT_HEADROOM = 0.7;
const MAX_SHARDS = 1024;
const MAX_TARGET_RATE = 1e9;

/** One measured shard count (a row of bench/results/sizing.json). */
export interface SizingRow {
  shards: number;
  seconds: number;
  acknowledged: number;
  assertions_per_s: number;
  p99_ms: number;
  /** Informational (not used by the model). */
  p50_ms?: number;
  errors?: number;
  main_cpu_s_per_assertion: number;
  /** Per shard thread, index = shard id. */
  shard_cpu_s_per_assertion: number[];
  process_cpu_s_per_assertion: number;
  fsyncs_per_s: number;
  records_per_fsync: number;
}

export interface SizingBasis {
  machine: string;
  command: string;
  rows: SizingRow[];
}

export interface SizingInput {
  target_rate: number;
  p99_ms: number;
  headroom: number;
}

export interface SizingResult {
  input: SizingInput;
  costs: {
    /** The basis row the CPU costs come from. */
    from_shards: number;
    main_cpu_s_per_assertion: number;
    shard_cpu_s_per_assertion: number;
    rest_cpu_s_per_assertion: number;
    disk_rate_per_shard: number;
  };
  main_ceiling_per_s: number;
  exceeds_main_ceiling: boolean;
  shards_for_cpu: number;
  shards_for_disk: number;
  shards: number;
  vcpus_main: number;
  vcpus_shards: number;
  vcpus_rest: number;
  vcpus: number;
  /** Measured p99 at the chosen shard count, null when that count was not measured. */
  measured_p99_ms: number | null;
  p99_met: boolean | null;
}

const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);

function finitePositive(x: unknown): x is number {
  return typeof x === "number" && Number.isFinite(x) && x >= 0;
}

/** Validates a parsed basis file; throws with the first problem found. */
export function checkBasis(value: unknown): SizingBasis {
  const b = value as Partial<SizingBasis> | null;
  if (b === null || typeof b !== "object" || !Array.isArray(b.rows) || b.rows.length === 0) {
    throw new Error("basis has no rows (expected the JSON written by npm run bench:sizing)");
  }
  for (const r of b.rows) {
    const ok =
      Number.isInteger(r.shards) &&
      r.shards >= 1 &&
      Array.isArray(r.shard_cpu_s_per_assertion) &&
      r.shard_cpu_s_per_assertion.length === r.shards &&
      r.shard_cpu_s_per_assertion.every(finitePositive) &&
      [
        r.assertions_per_s,
        r.p99_ms,
        r.main_cpu_s_per_assertion,
        r.process_cpu_s_per_assertion,
        r.fsyncs_per_s,
        r.records_per_fsync,
      ].every(finitePositive);
    if (!ok) throw new Error(`basis row is malformed: ${JSON.stringify(r).slice(0, 200)}`);
  }
  return {
    machine: typeof b.machine === "string" ? b.machine : "unknown",
    command: typeof b.command === "string" ? b.command : "unknown",
    rows: b.rows,
  };
}

/** The model (see the file header). Pure: no I/O. */
export function sizeFor(basis: SizingBasis, input: SizingInput): SizingResult {
  if (!(input.target_rate > 0) || !(input.headroom > 0 && input.headroom <= 1)) {
    throw new Error("target_rate must be > 0 and headroom in (0, 1]");
  }
  const rows = basis.rows;
  // CPU costs come from one row: the one with the lowest whole-process CPU per assertion.
  // Rows with more busy threads than vCPUs pay context switches and cache misses that a
  // right-sized machine does not; the least contended measurement is the per-unit cost.
  const base = rows.reduce((a, b) =>
    b.process_cpu_s_per_assertion < a.process_cpu_s_per_assertion ? b : a,
  );
  const mainCpu = base.main_cpu_s_per_assertion;
  const shardCpu = sum(base.shard_cpu_s_per_assertion);
  const restCpu = Math.max(0, base.process_cpu_s_per_assertion - mainCpu - shardCpu);
  // What one shard's WAL has been seen to sustain: a lower bound of its real ceiling.
  const diskPerShard = Math.max(
    ...rows.map((r) => (r.fsyncs_per_s / r.shards) * r.records_per_fsync),
  );
  const R = input.target_rate;
  const h = input.headroom;
  const mainCeiling = mainCpu > 0 ? h / mainCpu : Number.POSITIVE_INFINITY;
  const shardsForCpu = Math.ceil((R * shardCpu) / (1 * h));
  const shardsForDisk = diskPerShard > 0 ? Math.ceil(R / (diskPerShard * h)) : MAX_SHARDS;
  const shards = Math.min(MAX_SHARDS, Math.max(1, shardsForCpu, shardsForDisk));
  const vcpusRest = Math.ceil((R * restCpu) / h);
  const measured = rows.find((r) => r.shards === shards);
  const measuredP99 = measured === undefined ? null : measured.p99_ms;
  return {
    input,
    costs: {
      from_shards: base.shards,
      main_cpu_s_per_assertion: mainCpu,
      shard_cpu_s_per_assertion: shardCpu,
      rest_cpu_s_per_assertion: restCpu,
      disk_rate_per_shard: diskPerShard,
    },
    main_ceiling_per_s: mainCeiling,
    exceeds_main_ceiling: R > mainCeiling,
    shards_for_cpu: shardsForCpu,
    shards_for_disk: shardsForDisk,
    shards,
    vcpus_main: 1,
    vcpus_shards: shards,
    vcpus_rest: vcpusRest,
    vcpus: 1 + shards + vcpusRest,
    measured_p99_ms: measuredP99,
    p99_met: measuredP99 === null ? null : measuredP99 <= input.p99_ms,
  };
}

const us = (s: number) => `${(s * 1e6).toFixed(1)} µs`;
const n0 = (x: number) => Math.round(x).toLocaleString("en-US");

export function describeSizing(basis: SizingBasis, r: SizingResult): string {
  const { target_rate: R, p99_ms: L, headroom: h } = r.input;
  const c = r.costs;
  const lines = [
    `Measured basis: ${basis.machine}`,
    `  command: ${basis.command}`,
    "  shards | assertions/s | p99 ms | main CPU/assertion | shard CPU/assertion (sum) | process CPU/assertion | fsyncs/s | records/fsync",
    ...basis.rows.map(
      (row) =>
        `  ${String(row.shards).padStart(6)} | ${n0(row.assertions_per_s).padStart(12)} | ${row.p99_ms.toFixed(2).padStart(6)} | ${us(row.main_cpu_s_per_assertion).padStart(18)} | ${us(sum(row.shard_cpu_s_per_assertion)).padStart(25)} | ${us(row.process_cpu_s_per_assertion).padStart(21)} | ${n0(row.fsyncs_per_s).padStart(8)} | ${row.records_per_fsync.toFixed(2)}`,
    ),
    "",
    `Model (headroom ${h}; CPU costs from the ${c.from_shards}-shard row, the lowest whole-process CPU per assertion measured; disk rate = the largest measured per shard):`,
    `  main-thread CPU/assertion ${us(c.main_cpu_s_per_assertion)} → main-thread ceiling = ${h} / ${us(c.main_cpu_s_per_assertion)} = ${n0(r.main_ceiling_per_s)} assertions/s (one front-door thread)`,
    `  shard CPU/assertion ${us(c.shard_cpu_s_per_assertion)} → shards for CPU = ceil(${R} × ${us(c.shard_cpu_s_per_assertion)} / (1 core × ${h})) = ${r.shards_for_cpu}`,
    `  disk sync rate per shard (fsyncs/s per shard × records/fsync, as measured: a lower bound) ${n0(c.disk_rate_per_shard)}/s → shards for disk = ceil(${R} / (${n0(c.disk_rate_per_shard)} × ${h})) = ${r.shards_for_disk}`,
    `  rest of the process (libuv pool, lmdb writer, GC) ${us(c.rest_cpu_s_per_assertion)}/assertion → ceil(${R} × ${us(c.rest_cpu_s_per_assertion)} / ${h}) = ${r.vcpus_rest} vCPU`,
    `  vCPUs = 1 (main) + ${r.shards} (shards) + ${r.vcpus_rest} (rest) = ${r.vcpus}`,
    "",
    `Recommendation for ${n0(R)} assertions/s with p99 ≤ ${L} ms: STEMEDB_SHARDS=${r.shards}, ${r.vcpus} vCPUs.`,
  ];
  if (r.exceeds_main_ceiling) {
    lines.push(
      `  WARNING: ${n0(R)}/s exceeds the single-main-thread ceiling (${n0(r.main_ceiling_per_s)}/s at headroom ${h}). This is the model's limit: there is one front-door thread, so more shards or vCPUs do not raise it. Batch assertions per request, or spread load over several servers.`,
    );
  }
  if (r.measured_p99_ms === null) {
    lines.push(
      `  p99: ${r.shards} shards was not measured in this basis; the p99 target of ${L} ms is unchecked.`,
    );
  } else if (r.p99_met === true) {
    lines.push(
      `  p99: measured ${r.measured_p99_ms.toFixed(2)} ms at ${r.shards} shards (saturation load) ≤ ${L} ms: met.`,
    );
  } else {
    lines.push(
      `  p99: NOT met — measured ${r.measured_p99_ms.toFixed(2)} ms at ${r.shards} shards (saturation load) > ${L} ms.`,
    );
  }
  lines.push(
    "  The basis was measured on the machine above; on a different (bigger) machine re-run `npm run bench:sizing` there and pass its sizing.json with --basis.",
  );
  return lines.join("\n");
}

const HELP = `Usage: stemedb sizing --target-rate R --p99-ms L [options]

Recommends STEMEDB_SHARDS and a vCPU count for R single-assertion requests/s from the
per-unit costs measured by \`npm run bench:sizing\`.

Options:
  --target-rate R   assertions per second to sustain (required, > 0)
  --p99-ms L        acknowledgement p99 target in milliseconds (required, > 0)
  --basis F         measured basis (default: ${DEFAULT_BASIS})
  --headroom H      fraction of each core the model lets a thread use (default ${DEFAULT_HEADROOM})
  --json            print the result as JSON
  -h, --help        show this help`;

function positiveNumber(name: string, text: string | undefined, max: number): number {
  if (text === undefined) throw new UsageError(`--${name} is required`);
  const n = /^[0-9]+(\.[0-9]+)?$/.test(text) ? Number(text) : Number.NaN;
  if (!(n > 0 && n <= max)) {
    throw new UsageError(`--${name} must be a number in (0, ${max}], got ${JSON.stringify(text)}`);
  }
  return n;
}

export async function runSizing(argv: string[]): Promise<number> {
  const { values } = parseOrUsage(() =>
    parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        "target-rate": { type: "string" },
        "p99-ms": { type: "string" },
        basis: { type: "string", default: DEFAULT_BASIS },
        headroom: { type: "string" },
        json: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    }),
  );
  if (values.help) {
    out(HELP);
    return EXIT_OK;
  }
  const input: SizingInput = {
    target_rate: positiveNumber("target-rate", values["target-rate"], MAX_TARGET_RATE),
    p99_ms: positiveNumber("p99-ms", values["p99-ms"], 3_600_000),
    headroom:
      values.headroom === undefined
        ? DEFAULT_HEADROOM
        : positiveNumber("headroom", values.headroom, 1),
  };
  const basisPath = values.basis;
  let text: string;
  try {
    text = fs.readFileSync(basisPath, "utf8");
  } catch (err) {
    throw new Error(
      `cannot read the basis ${basisPath} (${(err as Error).message}); run \`npm run bench:sizing\` first`,
    );
  }
  const basis = checkBasis(JSON.parse(text));
  const result = sizeFor(basis, input);
  if (values.json) printJson({ basis: basisPath, ...result });
  else out(describeSizing(basis, result));
  return EXIT_OK;
}
