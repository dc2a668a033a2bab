// Small helpers shared by the load benchmarks: percentiles over bounded sample arrays and
// a markdown table printer. Samples are nanoseconds unless a name says otherwise.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index] as number;
}

export interface LatencySummary {
  count: number;
  p50_ms: number;
  p99_ms: number;
  p999_ms: number;
  max_ms: number;
}

export function summarizeNs(samplesNs: ArrayLike<number>): LatencySummary {
  const sorted = Float64Array.from(samplesNs).sort();
  const ms = (ns: number) => Math.round((ns / 1e6) * 1000) / 1000;
  return {
    count: sorted.length,
    p50_ms: ms(percentile(sorted, 50)),
    p99_ms: ms(percentile(sorted, 99)),
    p999_ms: ms(percentile(sorted, 99.9)),
    max_ms: ms(sorted[sorted.length - 1] ?? Number.NaN),
  };
}

/** A reservoir of at most `capacity` samples (uniform over everything offered). */
export class Reservoir {
  private readonly samples: Float64Array;
  private seen = 0;
  constructor(readonly capacity: number) {
    this.samples = new Float64Array(capacity);
  }
  add(value: number): void {
    if (this.seen < this.capacity) this.samples[this.seen] = value;
    else {
      const j = Math.floor(Math.random() * (this.seen + 1));
      if (j < this.capacity) this.samples[j] = value;
    }
    this.seen++;
  }
  values(): Float64Array {
    return this.samples.subarray(0, Math.min(this.seen, this.capacity));
  }
}

export function table(rows: Array<Record<string, string | number>>): string {
  if (rows.length === 0) return "";
  const headers = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const line = (cells: Array<string | number>) => `| ${cells.join(" | ")} |`;
  return [
    line(headers),
    line(headers.map(() => "---")),
    ...rows.map((r) => line(headers.map((h) => r[h] ?? ""))),
  ].join("\n");
}

export function machineLine(dir: string): string {
  let disk = "unknown";
  try {
    disk = execFileSync("df", ["-hT", dir], { encoding: "utf8" }).trim().split("\n")[1] ?? disk;
  } catch {
    // df missing: leave unknown
  }
  return `date ${new Date().toISOString()}, nproc ${os.availableParallelism()}, ${os.cpus()[0]?.model ?? "cpu?"}, node ${process.version}, disk: ${disk.replace(/\s+/g, " ")}`;
}

export function benchDir(name: string): string {
  const root = path.resolve(process.env.STEMEDB_BENCH_DIR ?? ".bench-tmp");
  fs.mkdirSync(root, { recursive: true });
  return fs.mkdtempSync(path.join(root, `${name}-`));
}
