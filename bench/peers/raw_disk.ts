// The physical floor for `bench:peers`: rawSyncLoop from the WAL addon (aligned O_DIRECT
// pwrite + fdatasync, entirely in C, one at a time). Concurrency 1 only: it is a loop, not a
// server. A "batch" is one write of 1000 × 150 bytes rounded up to 4 KiB blocks + fdatasync.
import fs from "node:fs";
import path from "node:path";
import { nativeWal, WAL_BLOCK_SIZE_BYTES } from "../../src/wal/native.js";
import { summarizeNs } from "../stats.js";
import type { CellResult } from "./driver.js";
import { RECORD_BYTES } from "./records.js";
import { BATCH_RECORDS, type PeerSystem } from "./system.js";

const CALIBRATION_ITERATIONS = 100;
/** rawSyncLoop zero-fills iterations × block first: keep that under 1 GiB. */
const MAX_FILL_BYTES = 1024 * 1024 * 1024;

export async function startRawDisk(root: string): Promise<PeerSystem> {
  let files = 0;
  const loop = (blockBytes: number, iterations: number): Float64Array => {
    const file = path.join(root, `raw-${files++}`);
    try {
      return nativeWal.rawSyncLoop(file, { iterations, blockBytes, direct: true, dsync: false });
    } finally {
      fs.rmSync(file, { force: true });
    }
  };
  const cell = (blockBytes: number, recordsPerWrite: number, seconds: number): CellResult => {
    // Size the loop from a short calibration run so it lasts about `seconds`.
    const calibration = loop(blockBytes, CALIBRATION_ITERATIONS);
    const meanNs = calibration.reduce((a, b) => a + b, 0) / calibration.length;
    const iterations = Math.max(
      CALIBRATION_ITERATIONS,
      Math.min(
        1_000_000,
        Math.floor(MAX_FILL_BYTES / blockBytes),
        Math.round((seconds * 1e9) / meanNs),
      ),
    );
    const samples = loop(blockBytes, iterations);
    const totalS = samples.reduce((a, b) => a + b, 0) / 1e9;
    const summary = summarizeNs(samples);
    return {
      records: iterations * recordsPerWrite,
      commits: iterations,
      seconds: totalS,
      p50_ms: summary.p50_ms,
      p99_ms: summary.p99_ms,
      errors: 0,
    };
  };
  const batchBlockBytes =
    Math.ceil((BATCH_RECORDS * RECORD_BYTES) / WAL_BLOCK_SIZE_BYTES) * WAL_BLOCK_SIZE_BYTES;
  const only1 = (c: number) => {
    if (c !== 1) throw new Error("the raw disk loop runs at concurrency 1 only");
  };
  return {
    name: "raw disk",
    mode: "C loop: O_DIRECT pwrite + fdatasync (rawSyncLoop)",
    singleConcurrency: [1],
    singles: async (c, seconds) => {
      only1(c);
      return cell(WAL_BLOCK_SIZE_BYTES, 1, seconds);
    },
    batches: async (c, seconds) => {
      only1(c);
      return cell(batchBlockBytes, BATCH_RECORDS, seconds);
    },
    stop: async () => {},
  };
}
