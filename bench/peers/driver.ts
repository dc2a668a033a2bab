// Closed-loop load for the in-process clients of `bench:peers` (PostgreSQL, SQLite, lmdb-js):
// `concurrency` clients each run "commit, wait until durable, repeat" for a fixed time; the
// latency of every commit is measured on the client side, like wrk does for StemeDB.
import { Reservoir, summarizeNs } from "../stats.js";
import { RecordSource } from "./records.js";
import { READ_RUN } from "./system.js";

/** Latency samples kept per cell (uniform reservoir over every commit). */
const MAX_SAMPLES = 200_000;

export interface CellResult {
  records: number;
  commits: number;
  seconds: number;
  p50_ms: number;
  p99_ms: number;
  errors: number;
}

export interface ClosedLoop {
  concurrency: number;
  seconds: number;
  recordsPerCommit: number;
  /** One durable commit by client `client`; resolves once the system says it is durable. */
  commit: (client: number) => Promise<void>;
}

export async function runClosedLoop(load: ClosedLoop): Promise<CellResult> {
  if (!(load.concurrency >= 1 && load.concurrency <= 4096)) {
    throw new Error(`concurrency ${load.concurrency} out of 1..4096`);
  }
  const samples = new Reservoir(MAX_SAMPLES);
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(Math.round(load.seconds * 1e9));
  let commits = 0;
  let errors = 0;
  let firstError: unknown = null;
  const client = async (index: number) => {
    while (process.hrtime.bigint() < deadline) {
      const t0 = process.hrtime.bigint();
      try {
        await load.commit(index);
      } catch (err) {
        errors++;
        firstError ??= err;
        // A failing system must not spin: one error per client ends that client.
        return;
      }
      samples.add(Number(process.hrtime.bigint() - t0));
      commits++;
    }
  };
  await Promise.all(Array.from({ length: load.concurrency }, (_, i) => client(i)));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  if (commits === 0 && firstError !== null) throw firstError;
  const summary = summarizeNs(samples.values());
  return {
    records: commits * load.recordsPerCommit,
    commits,
    seconds,
    p50_ms: summary.p50_ms,
    p99_ms: summary.p99_ms,
    errors,
  };
}

/** Runs `fn` once per element of a serial queue: a single writer shared by many clients. */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => T): Promise<T> {
    const result = this.tail.then(fn);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

/**
 * The read comparison: `concurrency` clients each look up the latest record of a concept,
 * spread over the `concepts` seeded ones (stride 7919, as bench/wrk/latest.lua does).
 * `lookup` resolves true when it found one; a miss is an error.
 */
export function runLatestLoop(
  concurrency: number,
  seconds: number,
  concepts: number,
  lookup: (concept: string) => Promise<boolean> | boolean,
): Promise<CellResult> {
  let counter = 0;
  return runClosedLoop({
    concurrency,
    seconds,
    recordsPerCommit: 1,
    commit: async () => {
      counter++;
      const concept = RecordSource.conceptName(READ_RUN, ((counter * 7919) % concepts) + 1);
      if (!(await lookup(concept))) throw new Error(`no latest record for ${concept}`);
    },
  });
}
