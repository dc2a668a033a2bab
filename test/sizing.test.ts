// The sizing model of `stemedb sizing` on a small hand-written basis (exact arithmetic worked
// out by hand below), and the command itself run as operators run it.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkBasis, type SizingBasis, sizeFor } from "../src/cli/sizing.js";

const CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), "../src/cli/main.js");

// Row 1 has the lowest whole-process CPU per assertion (200 µs < 300 µs), so the CPU costs
// come from it: main 100 µs, shards 50 µs, rest 200 − 100 − 50 = 50 µs.
// Disk rate per shard: row 1 500/1 × 4 = 2000/s, row 2 800/2 × 6 = 2400/s → 2400/s.
const BASIS: SizingBasis = {
  machine: "hand-written test basis",
  command: "none",
  rows: [
    {
      shards: 1,
      seconds: 5,
      acknowledged: 10_000,
      assertions_per_s: 2000,
      p99_ms: 20,
      main_cpu_s_per_assertion: 100e-6,
      shard_cpu_s_per_assertion: [50e-6],
      process_cpu_s_per_assertion: 200e-6,
      fsyncs_per_s: 500,
      records_per_fsync: 4,
    },
    {
      shards: 2,
      seconds: 5,
      acknowledged: 12_500,
      assertions_per_s: 2500,
      p99_ms: 40,
      main_cpu_s_per_assertion: 120e-6,
      shard_cpu_s_per_assertion: [40e-6, 40e-6],
      process_cpu_s_per_assertion: 300e-6,
      fsyncs_per_s: 800,
      records_per_fsync: 6,
    },
  ],
};

describe("sizing model", () => {
  it("picks the least contended row's costs and the best disk rate", () => {
    const r = sizeFor(checkBasis(BASIS), { target_rate: 1000, p99_ms: 50, headroom: 0.7 });
    expect(r.costs.from_shards).toBe(1);
    expect(r.costs.main_cpu_s_per_assertion).toBeCloseTo(100e-6, 12);
    expect(r.costs.shard_cpu_s_per_assertion).toBeCloseTo(50e-6, 12);
    expect(r.costs.rest_cpu_s_per_assertion).toBeCloseTo(50e-6, 12);
    expect(r.costs.disk_rate_per_shard).toBe(2400);
    // main ceiling 0.7 / 100 µs = 7000/s.
    expect(r.main_ceiling_per_s).toBeCloseTo(7000, 6);
    expect(r.exceeds_main_ceiling).toBe(false);
    // CPU: ceil(1000 × 50 µs / 0.7) = ceil(0.0714) = 1; disk: ceil(1000 / 1680) = 1.
    expect(r.shards_for_cpu).toBe(1);
    expect(r.shards_for_disk).toBe(1);
    expect(r.shards).toBe(1);
    // vCPUs: 1 main + 1 shard + ceil(1000 × 50 µs / 0.7) = 1.
    expect(r.vcpus_rest).toBe(1);
    expect(r.vcpus).toBe(3);
    expect(r.measured_p99_ms).toBe(20);
    expect(r.p99_met).toBe(true);
  });

  it("adds shards for the disk and reports an unmet p99", () => {
    // CPU ceil(3000 × 50 µs / 0.7) = ceil(0.214) = 1; disk ceil(3000 / 1680) = ceil(1.79) = 2.
    const r = sizeFor(BASIS, { target_rate: 3000, p99_ms: 30, headroom: 0.7 });
    expect(r.shards_for_cpu).toBe(1);
    expect(r.shards_for_disk).toBe(2);
    expect(r.shards).toBe(2);
    expect(r.vcpus).toBe(1 + 2 + 1);
    expect(r.measured_p99_ms).toBe(40);
    expect(r.p99_met).toBe(false);
  });

  it("flags a rate above the single-main-thread ceiling and an unmeasured shard count", () => {
    // disk ceil(10000 / 1680) = ceil(5.95) = 6; rest ceil(10000 × 50 µs / 0.7) = ceil(0.714) = 1.
    const r = sizeFor(BASIS, { target_rate: 10_000, p99_ms: 50, headroom: 0.7 });
    expect(r.exceeds_main_ceiling).toBe(true);
    expect(r.shards).toBe(6);
    expect(r.vcpus).toBe(1 + 6 + 1);
    expect(r.measured_p99_ms).toBeNull();
    expect(r.p99_met).toBeNull();
  });

  it("rejects a malformed basis", () => {
    expect(() => checkBasis({ rows: [] })).toThrow(/no rows/);
    const bad = { ...BASIS, rows: [{ ...BASIS.rows[0], shard_cpu_s_per_assertion: [] }] };
    expect(() => checkBasis(bad)).toThrow(/malformed/);
  });
});

describe("stemedb sizing (CLI)", () => {
  let dir = "";
  let basisPath = "";
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "stemedb-"));
    basisPath = path.join(dir, "sizing.json");
    fs.writeFileSync(basisPath, JSON.stringify(BASIS));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  const cli = (...args: string[]) =>
    spawnSync(process.execPath, [CLI, "sizing", ...args], { encoding: "utf8", timeout: 30_000 });

  it("prints the basis, the model and the recommendation; exit 0", () => {
    const r = cli("--target-rate", "1000", "--p99-ms", "50", "--basis", basisPath);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("Measured basis: hand-written test basis");
    expect(r.stdout).toContain("Model");
    expect(r.stdout).toContain("main-thread ceiling");
    expect(r.stdout).toContain("STEMEDB_SHARDS=1, 3 vCPUs");
    expect(r.stdout).toContain("npm run bench:sizing");
  });

  it("exits 2 on bad arguments", () => {
    expect(cli("--p99-ms", "50", "--basis", basisPath).status).toBe(2);
    expect(cli("--target-rate", "-5", "--p99-ms", "50").status).toBe(2);
    expect(cli("--target-rate", "10", "--p99-ms", "50", "--bogus").status).toBe(2);
  });
});
