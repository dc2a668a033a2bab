// bench:wal section 4b in a worker thread with the server's shard resource limits (the young
// generation of STEMEDB_SHARD_YOUNG_GEN_MB), so the figure is that of a shard as deployed.
// ShardCore: dedup lookup, LSN patch, WAL append + inline flush, batched async LMDB apply.
import fs from "node:fs";
import path from "node:path";
import { parentPort, workerData } from "node:worker_threads";
import { ShardCore } from "../../src/shard/shard_core.js";
import { type SampleIds, sampleAssertion } from "../../test/helpers/records.js";

export interface CoreApplyJob {
  dir: string;
  records: number;
  segmentBytes: number;
  ids: SampleIds;
}

export interface CoreApplyResult {
  acked: number;
  ackedS: number;
  committedS: number;
  /** CPU of the whole process during the run (shard, LMDB writer and GC threads), µs/record. */
  cpuUsPerRecord: number;
  /** Bytes passed to write()/pwrite() per record (WAL + LMDB pages), from /proc/self/io. */
  writeCallBytesPerRecord: number | null;
}

const PIPELINES = 4;
const RECORDS_PER_WRITE = 1000;

function writeCallBytes(): number | null {
  try {
    const m = /^wchar: (\d+)$/m.exec(fs.readFileSync("/proc/self/io", "utf8"));
    return m === null ? null : Number(m[1]);
  } catch {
    return null; // not Linux
  }
}

async function run(job: CoreApplyJob): Promise<CoreApplyResult> {
  const core = await ShardCore.open({
    shardId: 0,
    walDir: path.join(job.dir, "wal"),
    dbDir: path.join(job.dir, "db"),
    segmentSizeBytes: job.segmentBytes,
    walFlushMode: "inline", // the server's default (STEMEDB_WAL_FLUSH)
  });
  // Encoded up front: in the server the front door encodes, the shard does not. Packed as
  // the server's write messages are: one buffer per write, records as views into it (so
  // lmdb-js resolves one buffer address per write, not one per record).
  const writes: Uint8Array[][] = [];
  for (let first = 0; first < job.records; first += RECORDS_PER_WRITE) {
    const n = Math.min(RECORDS_PER_WRITE, job.records - first);
    const encoded = Array.from({ length: n }, (_, i) =>
      sampleAssertion(first + i, 10_000, "bench", job.ids),
    );
    const packed = Buffer.alloc(encoded.reduce((sum, r) => sum + r.byteLength, 0));
    let offset = 0;
    writes.push(
      encoded.map((r) => {
        packed.set(r, offset);
        offset += r.byteLength;
        return packed.subarray(offset - r.byteLength, offset);
      }),
    );
  }
  let next = 0;
  let acked = 0;
  const pipeline = async () => {
    while (next < writes.length) {
      const batch = writes[next++] as Uint8Array[];
      await new Promise<void>((resolve, reject) =>
        core.write(batch, (err) => (err === null ? resolve() : reject(err))),
      );
      acked += batch.length;
    }
  };
  const bytes0 = writeCallBytes();
  const cpu0 = process.cpuUsage();
  const started = performance.now();
  await Promise.all(Array.from({ length: PIPELINES }, pipeline));
  const ackedS = (performance.now() - started) / 1000;
  await core.settled();
  const committedS = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const bytes1 = writeCallBytes();
  await core.close();
  return {
    acked,
    ackedS,
    committedS,
    cpuUsPerRecord: (cpu.user + cpu.system) / acked,
    writeCallBytesPerRecord: bytes0 === null || bytes1 === null ? null : (bytes1 - bytes0) / acked,
  };
}

parentPort?.postMessage(await run(workerData as CoreApplyJob));
