import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { parseArgs } from "node:util";
import { api, createKey, readAdminKeyFile, startServerProcess } from "../src/cli/server_child.js";
import { benchDir, machineLine, percentile } from "./stats.js";
import { runWrk } from "./wrk.js";

const { values: args } = parseArgs({
  options: {
    minutes: { type: "string", default: "2" },
    load: { type: "string", default: "0.7" },
    shards: { type: "string", default: "2" },
    "sample-seconds": { type: "string", default: "10" },
    "capacity-seconds": { type: "string", default: "5" },
    connections: { type: "string", default: "64" },
    "warn-growth": { type: "string", default: "0.2" },
  },
});
const MINUTES = Number(args.minutes);
const LOAD = Number(args.load);
const SHARDS = Number(args.shards);
const SAMPLE_S = Number(args["sample-seconds"]);
const CAPACITY_S = Number(args["capacity-seconds"]);
const CONNECTIONS = Number(args.connections);
const WARN_GROWTH = Number(args["warn-growth"]);
if (!(MINUTES > 0 && MINUTES <= 24 * 60)) throw new Error("--minutes must be in (0, 1440]");
if (!(LOAD > 0 && LOAD <= 1)) throw new Error("--load must be in (0, 1]");
if (!(SAMPLE_S >= 1 && SAMPLE_S <= 600)) throw new Error("--sample-seconds must be in [1, 600]");
if (!(Number.isInteger(CONNECTIONS) && CONNECTIONS >= 1 && CONNECTIONS <= 1024)) {
  throw new Error("--connections must be an integer in [1, 1024]");
}
/** Requests waiting for a socket beyond this are counted as missed, not queued without bound. */
const MAX_IN_FLIGHT = CONNECTIONS * 4;
/** Latencies kept per sample window (uniform prefix is enough for p99 at these rates). */
const MAX_WINDOW_SAMPLES = 200_000;
const TICK_MS = 2;

function wrkCapacity(url: string, key: string, seconds: number): { rps: number; p99_ms: number } {
  const r = runWrk({
    url,
    script: "assert.lua",
    connections: 64,
    seconds,
    env: { STEMEDB_KEY: key, STEMEDB_RUN: "cap" },
  });
  return { rps: (r.requests - r.non2xx) / (r.duration_us / 1e6), p99_ms: r.p99_us / 1000 };
}

/** VmRSS and its split: RssFile is mapped file pages (LMDB's memory map grows with the data). */
function rss(pid: number): { total: number; anon: number; file: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (field: string) => {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(status);
    return m === null ? Number.NaN : Number(m[1]) * 1024;
  };
  return { total: kb("VmRSS"), anon: kb("RssAnon"), file: kb("RssFile") };
}

function gauge(text: string, name: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line === undefined ? Number.NaN : Number(line.slice(name.length + 1));
}

interface Sample {
  t_s: number;
  target_rps: number;
  acked_rps: number;
  errors: number;
  missed: number;
  p50_ms: number;
  p99_ms: number;
  rss_mib: number;
  rss_anon_mib: number;
  rss_file_mib: number;
  heap_used_mib: number;
  eventloop_delay_p99_ms: number;
}

const root = benchDir("soak");
const machine = machineLine(root);
const dataDir = path.join(root, "data");
fs.mkdirSync(dataDir);
const server = await startServerProcess({
  dataDir,
  shards: SHARDS,
  env: { STEMEDB_WAL_SEGMENT_BYTES: String(64 * 1024 * 1024) },
});
const pid = server.child.pid as number;
const url = new URL(server.baseUrl);
const key = await createKey(server.baseUrl, readAdminKeyFile(dataDir), "agent", "soak-bench");
// 1 s warm-up (JIT, first segment writes) so the capacity figure is not a cold start's.
wrkCapacity(server.baseUrl, key, 1);
const capacity = wrkCapacity(server.baseUrl, key, CAPACITY_S);
const rate = capacity.rps * LOAD;
process.stdout.write(
  `capacity (wrk c=64, ${CAPACITY_S} s): ${Math.round(capacity.rps)} req/s, p99 ${capacity.p99_ms.toFixed(2)} ms; soak at ${Math.round(rate)} req/s for ${MINUTES} min\n`,
);

const agent = new http.Agent({
  keepAlive: true,
  maxSockets: CONNECTIONS,
  maxFreeSockets: CONNECTIONS,
});
let inFlight = 0;
let counter = 0;
let window = { latencies: [] as number[], acked: 0, errors: 0, missed: 0, sent: 0 };
const totals = { acked: 0, errors: 0, missed: 0 };

function send(scheduledNs: bigint): void {
  counter++;
  const body = `{"concept":"soak/c${counter % 10000}","value":${counter},"confidence":0.5,"sources":["soak"]}`;
  inFlight++;
  window.sent++;
  const w = window;
  const done = (ok: boolean) => {
    inFlight--;
    // A request that straddles a sample boundary is counted in the window it started in.
    if (ok) {
      w.acked++;
      totals.acked++;
      if (w.latencies.length < MAX_WINDOW_SAMPLES) {
        w.latencies.push(Number(process.hrtime.bigint() - scheduledNs) / 1e6);
      }
    } else {
      w.errors++;
      totals.errors++;
    }
  };
  const req = http.request(
    {
      agent,
      host: url.hostname,
      port: url.port,
      method: "POST",
      path: "/v1/assert",
      headers: {
        "content-type": "application/json",
        "content-length": Buffer.byteLength(body),
        authorization: `Bearer ${key}`,
      },
      timeout: 10_000,
    },
    (res) => {
      res.resume();
      res.on("end", () => done(res.statusCode === 201));
      res.on("error", () => done(false));
    },
  );
  req.on("timeout", () => req.destroy(new Error("timeout")));
  req.on("error", () => done(false));
  req.end(body);
}

const samples: Sample[] = [];
const startNs = process.hrtime.bigint();
const durationNs = BigInt(Math.round(MINUTES * 60e9));
const intervalNs = BigInt(Math.round(1e9 / rate));
let issued = 0n;
let nextSampleNs = startNs + BigInt(SAMPLE_S * 1e9);

async function sample(nowNs: bigint): Promise<void> {
  const w = window;
  window = { latencies: [], acked: 0, errors: 0, missed: 0, sent: 0 };
  const metrics = (await api(server.baseUrl, null).request("GET", "/metrics")).text;
  const sorted = Float64Array.from(w.latencies).sort();
  const mem = rss(pid);
  const s: Sample = {
    t_s: Math.round(Number(nowNs - startNs) / 1e9),
    target_rps: Math.round(rate),
    acked_rps: Math.round(w.acked / SAMPLE_S),
    errors: w.errors,
    missed: w.missed,
    p50_ms: percentile(sorted, 50),
    p99_ms: percentile(sorted, 99),
    rss_mib: mem.total / 2 ** 20,
    rss_anon_mib: mem.anon / 2 ** 20,
    rss_file_mib: mem.file / 2 ** 20,
    heap_used_mib: gauge(metrics, "nodejs_heap_size_used_bytes") / 2 ** 20,
    eventloop_delay_p99_ms: gauge(metrics, "nodejs_eventloop_lag_p99_seconds") * 1000,
  };
  samples.push(s);
  process.stdout.write(
    `t=${s.t_s}s acked ${s.acked_rps}/s p50 ${s.p50_ms.toFixed(2)} p99 ${s.p99_ms.toFixed(2)} ms errors ${s.errors} missed ${s.missed} rss ${s.rss_mib.toFixed(1)} MiB (anon ${s.rss_anon_mib.toFixed(1)}, file ${s.rss_file_mib.toFixed(1)}) heap ${s.heap_used_mib.toFixed(1)} MiB loop p99 ${s.eventloop_delay_p99_ms.toFixed(2)} ms\n`,
  );
}

// Fixed-rate scheduler: every tick, issue all requests whose scheduled time has passed.
await new Promise<void>((resolve) => {
  const tick = async () => {
    const now = process.hrtime.bigint();
    if (now >= nextSampleNs) {
      nextSampleNs += BigInt(SAMPLE_S * 1e9);
      await sample(now);
    }
    if (now - startNs >= durationNs) {
      resolve();
      return;
    }
    const due = (now - startNs) / intervalNs;
    while (issued < due) {
      const scheduled = startNs + issued * intervalNs;
      issued++;
      if (inFlight >= MAX_IN_FLIGHT) {
        window.missed++;
        totals.missed++;
      } else send(scheduled);
    }
    setTimeout(tick, TICK_MS);
  };
  setTimeout(tick, TICK_MS);
});
// Let the last requests finish (bounded wait) before stopping the server.
for (let i = 0; i < 100 && inFlight > 0; i++) await new Promise((r) => setTimeout(r, 50));
agent.destroy();
await server.stop();
fs.rmSync(root, { recursive: true, force: true });

// Growth: mean of the last third vs the first third of the samples.
function growth(pick: (s: Sample) => number): { first: number; last: number; ratio: number } {
  const third = Math.max(1, Math.floor(samples.length / 3));
  const mean = (xs: Sample[]) => xs.reduce((a, s) => a + pick(s), 0) / xs.length;
  const first = mean(samples.slice(0, third));
  const last = mean(samples.slice(samples.length - third));
  return { first, last, ratio: last / first };
}

function polyline(
  pick: (s: Sample) => number,
  x0: number,
  y0: number,
  w: number,
  h: number,
): string {
  const values = samples.map(pick).filter(Number.isFinite);
  const max = Math.max(...values, 1e-9);
  const tMax = Math.max(...samples.map((s) => s.t_s), 1);
  return samples
    .map(
      (s) => `${(x0 + (s.t_s / tMax) * w).toFixed(1)},${(y0 + h - (pick(s) / max) * h).toFixed(1)}`,
    )
    .join(" ");
}

function svg(): string {
  const panels: Array<[string, (s: Sample) => number, string]> = [
    ["RSS MiB", (s) => s.rss_mib, "#1f77b4"],
    ["heap used MiB", (s) => s.heap_used_mib, "#2ca02c"],
    ["ack p99 ms", (s) => s.p99_ms, "#d62728"],
    ["event-loop delay p99 ms", (s) => s.eventloop_delay_p99_ms, "#9467bd"],
  ];
  const W = 640;
  const H = 110;
  const parts = panels.map(([label, pick, color], i) => {
    const y = 20 + i * (H + 30);
    const max = Math.max(...samples.map(pick).filter(Number.isFinite), 0);
    return [
      `<text x="10" y="${y - 4}" font-size="12">${label} (max ${max.toFixed(1)}; 0 at the bottom)</text>`,
      `<rect x="10" y="${y}" width="${W}" height="${H}" fill="none" stroke="#ccc"/>`,
      `<polyline fill="none" stroke="${color}" stroke-width="2" points="${polyline(pick, 10, y, W, H)}"/>`,
    ].join("\n");
  });
  const height = 20 + panels.length * (H + 30);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W + 20}" height="${height}" font-family="sans-serif">\n<text x="10" y="${height - 6}" font-size="11">soak: ${Math.round(rate)} req/s target, ${MINUTES} min, x = time (${SAMPLE_S} s samples)</text>\n${parts.join("\n")}\n</svg>\n`;
}

const header = Object.keys(samples[0] ?? { t_s: 0 }) as Array<keyof Sample>;
const csv = [
  header.join(","),
  ...samples.map((s) =>
    header.map((h) => (Number.isInteger(s[h]) ? s[h] : s[h].toFixed(3))).join(","),
  ),
].join("\n");
fs.mkdirSync("bench/results", { recursive: true });
fs.writeFileSync("bench/results/soak.csv", `${csv}\n`);
fs.writeFileSync("bench/results/soak.svg", svg());

const rssGrowth = growth((s) => s.rss_mib);
const anonGrowth = growth((s) => s.rss_anon_mib);
const p99 = growth((s) => s.p99_ms);
const all = samples.map((s) => s.p99_ms).sort((a, b) => a - b);
const lines = [
  "",
  `Soak summary — ${machine}`,
  `command: npm run bench:soak -- --minutes ${MINUTES} --load ${LOAD} --shards ${SHARDS} --connections ${CONNECTIONS}`,
  `capacity ${Math.round(capacity.rps)} req/s (wrk c=64 ${CAPACITY_S} s); target ${Math.round(rate)} req/s; acked ${totals.acked}, errors ${totals.errors}, missed (client at its in-flight bound ${MAX_IN_FLIGHT}) ${totals.missed}`,
  `per-window ack p99: median ${percentile(all, 50).toFixed(2)} ms, worst ${(all[all.length - 1] ?? Number.NaN).toFixed(2)} ms`,
  `RSS first third ${rssGrowth.first.toFixed(1)} MiB → last third ${rssGrowth.last.toFixed(1)} MiB (${((rssGrowth.ratio - 1) * 100).toFixed(1)} %); of it anonymous ${anonGrowth.first.toFixed(1)} → ${anonGrowth.last.toFixed(1)} MiB (${((anonGrowth.ratio - 1) * 100).toFixed(1)} %), the rest is mapped files (LMDB)`,
  `ack p99 first third ${p99.first.toFixed(2)} ms → last third ${p99.last.toFixed(2)} ms (${((p99.ratio - 1) * 100).toFixed(1)} %)`,
];
// The leak signal is anonymous memory (heap, buffers): RssFile is LMDB's memory map, which
// grows with the data by design and is reclaimable page cache.
if (anonGrowth.ratio > 1 + WARN_GROWTH)
  lines.push(
    `WARN: anonymous RSS grew ${((anonGrowth.ratio - 1) * 100).toFixed(1)} % (> ${WARN_GROWTH * 100} %)`,
  );
else if (rssGrowth.ratio > 1 + WARN_GROWTH)
  lines.push(
    `note: total RSS grew ${((rssGrowth.ratio - 1) * 100).toFixed(1)} %, anonymous only ${((anonGrowth.ratio - 1) * 100).toFixed(1)} % (within ${WARN_GROWTH * 100} %): the rest is mapped files (LMDB's map grows with the data)`,
  );
if (p99.ratio > 1 + WARN_GROWTH)
  lines.push(
    `WARN: ack p99 grew ${((p99.ratio - 1) * 100).toFixed(1)} % (> ${WARN_GROWTH * 100} %)`,
  );
if (totals.errors > 0) lines.push(`WARN: ${totals.errors} requests failed`);
lines.push("wrote bench/results/soak.csv and bench/results/soak.svg");
process.stdout.write(`${lines.join("\n")}\n`);
