// `npm run bench:piscina`: the round trip the shard owners' design rests on, measured both
// ways on this machine: a plain Worker's port (what src/server/shard_handle.ts uses) vs a
// piscina pool of the same size (DESIGN §1 names piscina). Echo tasks, no work: c=1 latency
// (sequential) and c=64 throughput (64 concurrent callers), same run, alternating.
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Worker } from "node:worker_threads";
import { Piscina } from "piscina";
import { benchDir, machineLine, Reservoir, summarizeNs, table } from "./stats.js";

const { values: args } = parseArgs({
  options: {
    seconds: { type: "string", default: "3" },
    iterations: { type: "string", default: "5000" },
    threads: { type: "string", default: "2" },
  },
});
const SECONDS = Number(args.seconds);
const ITERATIONS = Number(args.iterations);
const THREADS = Number(args.threads);
const here = path.dirname(fileURLToPath(import.meta.url));

type Call = (msg: { i: number }) => Promise<unknown>;

/** One Worker per "shard"; a caller picks its worker (as the router picks the owning shard). */
async function portTransport(): Promise<{ call: (w: number) => Call; close: () => Promise<void> }> {
  const workers = Array.from(
    { length: THREADS },
    () => new Worker(path.join(here, "workers/echo_port_worker.js")),
  );
  await Promise.all(workers.map((w) => new Promise((r) => w.once("online", r))));
  const waiting = workers.map(() => [] as Array<(v: unknown) => void>);
  for (const [k, w] of workers.entries()) {
    w.on("message", (m: unknown) => (waiting[k] as Array<(v: unknown) => void>).shift()?.(m));
  }
  return {
    call: (k) => (msg) =>
      new Promise((resolve) => {
        (waiting[k] as Array<(v: unknown) => void>).push(resolve);
        (workers[k] as Worker).postMessage(msg);
      }),
    close: async () => {
      await Promise.all(workers.map((w) => w.terminate()));
    },
  };
}

async function piscinaTransport(): Promise<{
  call: (w: number) => Call;
  close: () => Promise<void>;
}> {
  const pool = new Piscina({
    filename: path.join(here, "workers/echo_piscina_task.js"),
    minThreads: THREADS,
    maxThreads: THREADS,
  });
  await Promise.all(Array.from({ length: THREADS * 4 }, (_, i) => pool.run({ i })));
  // piscina picks the thread itself: the caller's "shard" cannot be honoured.
  return { call: () => (msg) => pool.run(msg), close: () => pool.destroy() };
}

async function measure(
  name: string,
  make: () => Promise<{ call: (w: number) => Call; close: () => Promise<void> }>,
): Promise<Array<Record<string, string | number>>> {
  const t = await make();
  const single = new Float64Array(ITERATIONS);
  const call0 = t.call(0);
  for (let i = 0; i < ITERATIONS; i++) {
    const t0 = process.hrtime.bigint();
    await call0({ i });
    single[i] = Number(process.hrtime.bigint() - t0);
  }
  const s1 = summarizeNs(single);
  const latencies = new Reservoir(200_000);
  let done = 0;
  const deadline = performance.now() + SECONDS * 1000;
  const caller = async (c: number) => {
    const call = t.call(c % THREADS);
    while (performance.now() < deadline) {
      const t0 = performance.now();
      await call({ i: c });
      latencies.add((performance.now() - t0) * 1e6);
      done++;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: 64 }, (_, c) => caller(c)));
  const rate = done / ((performance.now() - started) / 1000);
  const s64 = summarizeNs(latencies.values());
  await t.close();
  return [
    { transport: name, c: 1, "round trips/s": Math.round(1000 / s1.p50_ms), ...pick(s1) },
    { transport: name, c: 64, "round trips/s": Math.round(rate), ...pick(s64) },
  ];
}

function pick(s: { p50_ms: number; p99_ms: number; p999_ms: number }): Record<string, number> {
  return { p50_ms: s.p50_ms, p99_ms: s.p99_ms, p999_ms: s.p999_ms };
}

const root = benchDir("piscina");
const rows: Array<Record<string, string | number>> = [];
for (let round = 0; round < 2; round++) {
  rows.push(...(await measure(`worker port (round ${round + 1})`, portTransport)));
  rows.push(
    ...(await measure(`piscina ${Piscina.version} (round ${round + 1})`, piscinaTransport)),
  );
}
const out = [
  `# Transport bench — ${machineLine(root)}`,
  "",
  `Command: \`npm run bench:piscina -- --seconds ${SECONDS} --iterations ${ITERATIONS} --threads ${THREADS}\`. Echo round trips main → worker → main; c=1 round trips/s = 1 / p50.`,
  "",
  table(rows),
  "",
].join("\n");
process.stdout.write(out);
(await import("node:fs")).writeFileSync(path.join(here, "../../bench/results/piscina.md"), out);
