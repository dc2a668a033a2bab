// lmdb-js for `bench:peers`, in its default durable mode: `open()` with default options, which
// on Linux means overlappingSync (a commit becomes visible, then its flush to disk completes
// on lmdb-js's write thread). `put` promises resolve at commit, so each client waits for the
// put's `flushed` promise (exposed by `separateFlushed`, which changes no sync behaviour):
// that is the moment the record is durable. Concurrent puts of one event turn share a
// transaction, the library's own group commit. Each record is a put of id → record plus a
// put of [concept, ts] → id (the concept index), in the same transaction.
import path from "node:path";
import { open } from "lmdb";
import { runClosedLoop } from "./driver.js";
import { RecordSource } from "./records.js";
import { BATCH_RECORDS, type PeerSystem } from "./system.js";

type Flushable = Promise<boolean> & { flushed?: Promise<unknown> };

export async function startLmdb(root: string): Promise<PeerSystem> {
  const env = open({ path: path.join(root, "lmdb"), separateFlushed: true });
  const records = env.openDB<Buffer, Buffer>({ name: "records", encoding: "binary" });
  const byConcept = env.openDB<Buffer, [string, number]>({
    name: "by_concept",
    encoding: "binary",
  });
  const putRecord = (source: RecordSource): Flushable => {
    const r = source.next();
    records.put(r.id, r.record);
    return byConcept.put([r.concept, r.ts], r.id) as Flushable;
  };
  const durable = async (writes: Flushable[]) => {
    const flushes = new Set<Promise<unknown>>();
    for (const w of writes) {
      if (w.flushed === undefined) throw new Error("lmdb-js put has no flushed promise");
      flushes.add(w.flushed);
      await w;
    }
    await Promise.all(flushes);
  };
  return {
    name: "lmdb-js",
    mode: "lmdb-js defaults (overlappingSync); commit = the put's flushed promise",
    singleConcurrency: null,
    singles: (c, seconds) => {
      const source = new RecordSource(`s${c}`);
      return runClosedLoop({
        concurrency: c,
        seconds,
        recordsPerCommit: 1,
        commit: () => durable([putRecord(source)]),
      });
    },
    batches: (c, seconds) => {
      const source = new RecordSource(`b${c}`);
      return runClosedLoop({
        concurrency: c,
        seconds,
        recordsPerCommit: BATCH_RECORDS,
        commit: () => durable(Array.from({ length: BATCH_RECORDS }, () => putRecord(source))),
      });
    },
    stop: async () => {
      await env.close();
    },
  };
}
