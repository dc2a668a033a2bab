// `npm run bench:ws`: WebSocket streaming ingest (WS /v1/stream) against HTTP single-assertion
// ingest (POST /v1/assert, one assertion per request, wrk + bench/wrk/assert.lua) on the same
// server, at equal durability: both are answered only after the WAL fsync. Every message and
// request carries a new assertion of the same shape, so none is a cheap duplicate.
//
// Rows: HTTP at each --http-c; WS with the same number of assertions outstanding as each HTTP
// row (--ws-connections connections, c / connections unacked each); and WS at the server's
// default window (--window per connection). Ratios are taken within this one run.
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import WebSocket from "ws";
import { createKey, readAdminKeyFile, startServerProcess } from "../src/cli/server_child.js";
import { DEFAULT_WS_MAX_INFLIGHT } from "../src/domain/limits.js";
import { benchDir, machineLine, Reservoir, summarizeNs, table } from "./stats.js";
import { requestsPerSecond, runWrk, type WrkResult } from "./wrk.js";

const { values: args } = parseArgs({
  options: {
    seconds: { type: "string", default: "8" },
    shards: { type: "string", default: "2" },
    "http-c": { type: "string", default: "64,256" },
    "ws-connections": { type: "string", default: "4" },
    window: { type: "string", default: String(DEFAULT_WS_MAX_INFLIGHT) },
    out: { type: "string", default: "bench/results/ws_bench.md" },
  },
});
const SECONDS = Number(args.seconds);
const HTTP_C = (args["http-c"] as string).split(",").map(Number);
const WS_CONNECTIONS = Number(args["ws-connections"]);
const WINDOW = Number(args.window);
/** Latency samples kept per WS run (uniform reservoir). */
const SAMPLES = 200_000;

interface WsResult {
  acks: number;
  errors: number;
  seconds: number;
  samplesNs: Float64Array;
}

/**
 * `connections` WebSockets, each keeping `inflight` messages unacknowledged for `seconds`;
 * ack latency = send to ack, measured in this process.
 */
async function runWs(
  url: string,
  key: string,
  run: string,
  connections: number,
  inflight: number,
  seconds: number,
): Promise<WsResult> {
  const reservoir = new Reservoir(SAMPLES);
  let acks = 0;
  let errors = 0;
  let stopAt = Number.POSITIVE_INFINITY;
  const sockets = await Promise.all(
    Array.from(
      { length: connections },
      () =>
        new Promise<WebSocket>((resolve, reject) => {
          const ws = new WebSocket(url, { headers: { authorization: `Bearer ${key}` } });
          ws.once("open", () => resolve(ws));
          ws.once("error", reject);
        }),
    ),
  );
  const started = performance.now();
  stopAt = started + seconds * 1000;
  const done = sockets.map(
    (ws, k) =>
      new Promise<void>((resolve) => {
        const sentAt = new Map<number, number>();
        let seq = 0;
        const sendOne = () => {
          const n = seq++;
          sentAt.set(n, performance.now());
          ws.send(
            `{"seq":${n},"assertion":{"concept":"bench/${run}/k${k}/c${n % 10000}","value":${n},"confidence":0.5,"sources":["ws"]}}`,
          );
        };
        ws.on("message", (data: Buffer) => {
          const now = performance.now();
          const text = data.toString("utf8");
          const seqEnd = text.indexOf(",");
          const n = Number(text.slice(7, seqEnd)); // {"seq":N,…
          const t = sentAt.get(n);
          sentAt.delete(n);
          if (text.includes('"error"')) errors++;
          else if (t !== undefined) {
            acks++;
            reservoir.add((now - t) * 1e6);
          }
          if (now < stopAt) sendOne();
          else if (sentAt.size === 0) resolve();
        });
        ws.on("close", () => resolve());
        // A frame without a readable seq would keep the drain waiting: give up after 10 s.
        setTimeout(resolve, (seconds + 10) * 1000).unref();
        for (let i = 0; i < inflight; i++) sendOne();
      }),
  );
  await Promise.all(done);
  const elapsed = (performance.now() - started) / 1000;
  for (const ws of sockets) ws.close();
  return { acks, errors, seconds: elapsed, samplesNs: reservoir.values() };
}

function httpRow(c: number, r: WrkResult): Record<string, string | number> {
  return {
    what: "HTTP POST /v1/assert, 1 assertion per request (wrk)",
    outstanding: c,
    "assertions/s": Math.round(requestsPerSecond(r)),
    p50_ms: (r.p50_us / 1000).toFixed(3),
    p99_ms: (r.p99_us / 1000).toFixed(3),
    errors: r.socket_errors + r.non2xx,
  };
}

function wsRow(
  connections: number,
  inflight: number,
  r: WsResult,
): Record<string, string | number> {
  const s = summarizeNs(r.samplesNs);
  return {
    what: `WS /v1/stream, ${connections} connections x ${inflight} unacked`,
    outstanding: connections * inflight,
    "assertions/s": Math.round(r.acks / r.seconds),
    p50_ms: s.p50_ms.toFixed(3),
    p99_ms: s.p99_ms.toFixed(3),
    errors: r.errors,
  };
}

const root = benchDir("ws");
const lines: string[] = [
  `# WS ingest bench — ${machineLine(root)}`,
  "",
  `${SECONDS}s per run; server with ${args.shards} shards (WAL fsync before every answer); HTTP load from wrk, WS load from one Node process (ws client); same machine.`,
  "",
];
const print = (s: string) => {
  lines.push(s);
  process.stdout.write(`${s}\n`);
};

const dataDir = path.join(root, "data");
fs.mkdirSync(dataDir);
const server = await startServerProcess({
  dataDir,
  shards: Number(args.shards),
  env: {
    STEMEDB_WAL_SEGMENT_BYTES: String(64 * 1024 * 1024),
    STEMEDB_WS_MAX_INFLIGHT: String(WINDOW),
  },
});
const key = await createKey(server.baseUrl, readAdminKeyFile(dataDir), "agent", "bench-agent");
const wsUrl = `${server.baseUrl.replace(/^http/, "ws")}/v1/stream`;

const rows: Array<Record<string, string | number>> = [];
const pairs: Array<{ c: number; http: WrkResult; ws: WsResult }> = [];
for (const c of HTTP_C) {
  const http = runWrk({
    url: server.baseUrl,
    script: "assert.lua",
    connections: c,
    seconds: SECONDS,
    env: { STEMEDB_KEY: key, STEMEDB_RUN: `h${c}` },
  });
  rows.push(httpRow(c, http));
  const perConnection = Math.max(1, Math.round(c / WS_CONNECTIONS));
  const ws = await runWs(wsUrl, key, `w${c}`, WS_CONNECTIONS, perConnection, SECONDS);
  rows.push(wsRow(WS_CONNECTIONS, perConnection, ws));
  pairs.push({ c, http, ws });
}
const full = await runWs(wsUrl, key, "wfull", WS_CONNECTIONS, WINDOW, SECONDS);
rows.push(wsRow(WS_CONNECTIONS, WINDOW, full));
await server.stop();
fs.rmSync(root, { recursive: true, force: true });

print(table(rows));
print("");
for (const { c, http, ws } of pairs) {
  const ratio = ws.acks / ws.seconds / requestsPerSecond(http);
  const p99 = summarizeNs(ws.samplesNs).p99_ms / (http.p99_us / 1000);
  print(
    `${c} outstanding: WS/HTTP throughput ${ratio.toFixed(2)}x, ack p99 WS/HTTP ${p99.toFixed(2)}x.`,
  );
}
const bestHttp = Math.max(...pairs.map((p) => requestsPerSecond(p.http)));
const fullRatio = full.acks / full.seconds / bestHttp;
print(
  `WS at the default window (${WS_CONNECTIONS} x ${WINDOW}) vs the best HTTP row: ${fullRatio.toFixed(2)}x ` +
    `(target >= 2x: ${fullRatio >= 2 ? "met" : "not met"}).`,
);
fs.mkdirSync(path.dirname(args.out as string), { recursive: true });
fs.writeFileSync(args.out as string, `${lines.join("\n")}\n`);
