// `npm run bench:wal`: the storage core, in one run on one disk.
//  1. raw floor: 4 KiB O_DIRECT write + sync loop entirely in C (O_DSYNC and fdatasync);
//  2. single-record durable append through the WAL (append, wait, repeat) vs that floor, with
//     the flush on a libuv thread ("pool") and on the calling thread ("inline");
//  3. group commit with 1/16/256 concurrent appenders of 150-byte records;
//  4. WAL-only throughput with deep pipelines; WAL + LMDB apply on one shard;
//  5. recovery replay rate (WAL scan alone, and into LMDB).
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Worker } from "node:worker_threads";
import { DEFAULT_SHARD_YOUNG_GEN_MB } from "../src/domain/limits.js";
import { ShardCore } from "../src/shard/shard_core.js";
import { setRecordLsn } from "../src/store/assertion_codec.js";
import { nativeWal } from "../src/wal/native.js";
import { Wal, type WalFlushMode, type WalObserver } from "../src/wal/wal.js";
import type { SampleIds } from "../test/helpers/records.js";
import { sampleAssertion } from "../test/helpers/records.js";
import { benchDir, machineLine, Reservoir, summarizeNs, table } from "./stats.js";
import type { CoreApplyJob, CoreApplyResult } from "./workers/core_apply_worker.js";

const here = path.dirname(fileURLToPath(import.meta.url));

const { values: args } = parseArgs({
  options: {
    seconds: { type: "string", default: "3" },
    iterations: { type: "string", default: "20000" },
    "replay-records": { type: "string", default: "1000000" },
    // The VM's speed drifts by tens of percent within minutes: several runs, each reported.
    "core-runs": { type: "string", default: "3" },
  },
});
const SECONDS = Number(args.seconds);
const ITERATIONS = Number(args.iterations);
const REPLAY_RECORDS = Number(args["replay-records"]);
const CORE_RUNS = Number(args["core-runs"]);
const CORE_RECORDS = 300_000;
const SEGMENT_BYTES = 64 * 1024 * 1024;
const RECORD = Buffer.alloc(150, 0x61);

const root = benchDir("wal");
const out: string[] = [`# WAL bench — ${machineLine(root)}`, ""];
const print = (s: string) => {
  out.push(s);
  process.stdout.write(`${s}\n`);
};

function flushCounter(): WalObserver & { flushes: number; records: number } {
  const o = {
    flushes: 0,
    records: 0,
    onFlush(records: number) {
      o.flushes++;
      o.records += records;
    },
    onError() {},
    onRotate() {},
    onSegments() {},
  };
  return o;
}

async function openWal(
  name: string,
  syncMode: "dsync" | "fdatasync",
  observer?: WalObserver,
  flushMode: WalFlushMode = "pool",
): Promise<Wal> {
  return Wal.open({
    dir: path.join(root, name),
    shardId: 0,
    segmentSizeBytes: SEGMENT_BYTES,
    checkpointLsn: 0,
    syncMode,
    flushMode,
    onRecord: () => {},
    observer,
  });
}

// 1 + 2: floor vs single-record append, interleaved in rounds (raw, pool, inline, raw, ...)
// so that all three see the same moments of the disk: its latency drifts within seconds.
const LATENCY_ROUNDS = 20;
const latencyRows: Array<Record<string, string | number>> = [];
for (const syncMode of ["dsync", "fdatasync"] as const) {
  const perRound = Math.ceil(ITERATIONS / LATENCY_ROUNDS);
  const modes = ["pool", "inline"] as const;
  const wals = await Promise.all(
    modes.map((flushMode) =>
      openWal(`single-${syncMode}-${flushMode}`, syncMode, undefined, flushMode),
    ),
  );
  const raw: number[] = [];
  const walSamples: number[][] = modes.map(() => []);
  for (let round = 0; round < LATENCY_ROUNDS; round++) {
    const rawRound = nativeWal.rawSyncLoop(path.join(root, `raw-${syncMode}`), {
      iterations: perRound,
      blockBytes: 4096,
      direct: true,
      dsync: syncMode === "dsync",
    });
    for (const ns of rawRound) raw.push(ns);
    for (let m = 0; m < modes.length; m++) {
      const wal = wals[m] as Wal;
      const out = walSamples[m] as number[];
      for (let i = 0; i < perRound; i++) {
        const t0 = process.hrtime.bigint();
        await wal.durable(wal.append(1, RECORD));
        out.push(Number(process.hrtime.bigint() - t0));
      }
    }
  }
  for (const wal of wals) await wal.close();
  const rawSummary = summarizeNs(Float64Array.from(raw));
  latencyRows.push({ what: `raw 4 KiB O_DIRECT + ${syncMode} (C loop)`, ...rawSummary });
  modes.forEach((flushMode, m) => {
    const walSummary = summarizeNs(Float64Array.from(walSamples[m] as number[]));
    latencyRows.push({
      what: `WAL single-record durable append (${syncMode}, ${flushMode} flush)`,
      ...walSummary,
      "p50 ratio": (walSummary.p50_ms / rawSummary.p50_ms).toFixed(2),
      "p99 ratio": (walSummary.p99_ms / rawSummary.p99_ms).toFixed(2),
    });
  });
}
print("## Durable append latency vs the raw disk floor\n");
print(table(latencyRows));

// 3: group commit with N concurrent appenders (each: append, wait, repeat).
async function groupCommit(
  concurrency: number,
  syncMode: "dsync" | "fdatasync",
  flushMode: WalFlushMode,
): Promise<Record<string, string | number>> {
  const counter = flushCounter();
  const wal = await openWal(
    `group-${concurrency}-${syncMode}-${flushMode}`,
    syncMode,
    counter,
    flushMode,
  );
  const latencies = new Reservoir(200_000);
  const deadline = performance.now() + SECONDS * 1000;
  let acked = 0;
  const appender = async () => {
    while (performance.now() < deadline) {
      const t0 = performance.now();
      await wal.durable(wal.append(1, RECORD));
      latencies.add((performance.now() - t0) * 1e6);
      acked++;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, appender));
  const elapsedS = (performance.now() - started) / 1000;
  await wal.close();
  const s = summarizeNs(latencies.values());
  return {
    appenders: concurrency,
    sync: syncMode,
    flush: flushMode,
    "records/s": Math.round(acked / elapsedS),
    "records/sync": (counter.records / Math.max(1, counter.flushes)).toFixed(1),
    "syncs/s": Math.round(counter.flushes / elapsedS),
    p50_ms: s.p50_ms,
    p99_ms: s.p99_ms,
  };
}
const groupRows: Array<Record<string, string | number>> = [];
for (const c of [1, 16, 256]) groupRows.push(await groupCommit(c, "dsync", "pool"));
for (const c of [1, 16, 256]) groupRows.push(await groupCommit(c, "dsync", "inline"));
for (const c of [1, 16, 256]) groupRows.push(await groupCommit(c, "fdatasync", "pool"));
print("\n## Group commit, 150-byte records\n");
print(table(groupRows));

// 4a: WAL-only throughput: batches of 1000 appends per wait, 8 batches in flight.
async function walOnlyThroughput(): Promise<Record<string, string | number>> {
  const counter = flushCounter();
  const wal = await openWal("wal-only", "dsync", counter);
  const deadline = performance.now() + SECONDS * 1000;
  let acked = 0;
  const pipeline = async () => {
    while (performance.now() < deadline) {
      let last = 0;
      for (let i = 0; i < 1000; i++) last = wal.append(1, RECORD);
      await wal.durable(last);
      acked += 1000;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: 8 }, pipeline));
  const elapsedS = (performance.now() - started) / 1000;
  await wal.close();
  return {
    what: "WAL only (8 pipelines x 1000 records)",
    "records/s": Math.round(acked / elapsedS),
    "records/sync": (counter.records / Math.max(1, counter.flushes)).toFixed(0),
    "MB/s": ((counter.records * (RECORD.byteLength + 32)) / elapsedS / 1e6).toFixed(1),
  };
}

// 4b: WAL + LMDB on one shard, in a worker thread with the server's shard resource limits.
async function walPlusLmdb(run: number, ids: SampleIds): Promise<Record<string, string | number>> {
  const job: CoreApplyJob = {
    dir: path.join(root, `core-${run}-${ids}`),
    records: CORE_RECORDS,
    segmentBytes: SEGMENT_BYTES,
    ids,
  };
  const worker = new Worker(path.join(here, "workers/core_apply_worker.js"), {
    workerData: job,
    resourceLimits: { maxYoungGenerationSizeMb: DEFAULT_SHARD_YOUNG_GEN_MB },
  });
  const r = await new Promise<CoreApplyResult>((resolve, reject) => {
    worker.once("message", resolve);
    worker.once("error", reject);
    worker.once("exit", (code) =>
      reject(new Error(`core apply worker exited (${code}) without a result`)),
    );
  });
  await worker.terminate();
  fs.rmSync(job.dir, { recursive: true, force: true }); // each run starts from an empty disk
  return {
    what: `WAL + LMDB apply, one shard (4 pipelines x 1000, ${CORE_RECORDS} pre-encoded records, ${ids} ids), run ${run + 1}/${CORE_RUNS}`,
    "records/s": Math.round(r.acked / r.ackedS),
    "records/s incl. LMDB commit": Math.round(r.acked / r.committedS),
    "CPU µs/record (all threads)": r.cpuUsPerRecord.toFixed(1),
    "write() bytes/record":
      r.writeCallBytesPerRecord === null ? "n/a" : Math.round(r.writeCallBytesPerRecord),
  };
}

const throughputRows = [await walOnlyThroughput()];
// Routable ids are what the server writes; sequential ones (the figure before 2026-12-04
// evening) are the best case for an id-ordered index. Alternated, so drift hits both alike.
for (let run = 0; run < CORE_RUNS; run++) {
  throughputRows.push(await walPlusLmdb(run, "routable"));
  throughputRows.push(await walPlusLmdb(run, "sequential"));
}
print("\n## Throughput\n");
print(table(throughputRows));

// 5: replay. Write REPLAY_RECORDS encoded assertions straight into a WAL, then time a full
// scan (checkpoint 0) and a ShardCore open that replays them into an empty LMDB.
async function replay(): Promise<Array<Record<string, string | number>>> {
  const walDir = path.join(root, "replay", "wal");
  const wal = await Wal.open({
    dir: walDir,
    shardId: 0,
    segmentSizeBytes: SEGMENT_BYTES,
    checkpointLsn: 0,
    onRecord: () => {},
  });
  let last = 0;
  let payloadBytes = 0;
  for (let i = 0; i < REPLAY_RECORDS; i++) {
    const record = sampleAssertion(i, 10_000, "bench", "routable");
    setRecordLsn(record, wal.nextLsn);
    payloadBytes += record.byteLength;
    last = wal.append(1, record);
    if (i % 1000 === 999) await wal.durable(last);
  }
  await wal.durable(last);
  await wal.close();
  let replayed = 0;
  const t0 = performance.now();
  const again = await Wal.open({
    dir: walDir,
    shardId: 0,
    segmentSizeBytes: SEGMENT_BYTES,
    checkpointLsn: 0,
    onRecord: () => {
      replayed++;
    },
  });
  const walS = (performance.now() - t0) / 1000;
  await again.close();
  const t1 = performance.now();
  const reopened = await ShardCore.open({
    shardId: 0,
    walDir,
    dbDir: path.join(root, "replay", "db"),
    segmentSizeBytes: SEGMENT_BYTES,
  });
  const lmdbS = (performance.now() - t1) / 1000;
  const intoLmdb = reopened.recovery.replayedRecords;
  await reopened.close();
  const avg = Math.round(payloadBytes / REPLAY_RECORDS);
  return [
    {
      what: `WAL replay scan (CRC + framing), ${avg}-byte records`,
      records: replayed,
      "records/s": Math.round(replayed / walS),
    },
    {
      what: "WAL replay into LMDB (ShardCore.open)",
      records: intoLmdb,
      "records/s": Math.round(intoLmdb / lmdbS),
    },
  ];
}
print("\n## Recovery replay\n");
print(table(await replay()));

fs.rmSync(root, { recursive: true, force: true });
fs.mkdirSync("bench/results", { recursive: true });
fs.writeFileSync(path.join("bench/results", "wal_bench.md"), `${out.join("\n")}\n`);
