// `npm run bench:lens`: read cost of the lenses on a real server (wrk, c=1 and c=16).
//   - one concept with 100 active assertions (20 agents, 4 values) and 500 votes (50 voters
//     × 10 assertions): consensus vs latest vs history on the same concept, same run;
//   - a subtree of 10,000 concepts over every shard: first page (limit 100) of latest and of
//     consensus, and a full walk of all pages (limit 1000) timed from one client.
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { api, createKey, readAdminKeyFile, startServerProcess } from "../src/cli/server_child.js";
import { benchDir, machineLine, table } from "./stats.js";
import { requestsPerSecond, runWrk } from "./wrk.js";

const { values: args } = parseArgs({
  options: {
    seconds: { type: "string", default: "8" },
    shards: { type: "string", default: "2" },
    concepts: { type: "string", default: "10000" },
    out: { type: "string", default: "bench/results/lens_bench.md" },
  },
});
const SECONDS = Number(args.seconds);
const CONCEPTS = Number(args.concepts);

const root = benchDir("lens");
const dataDir = path.join(root, "data");
fs.mkdirSync(dataDir);
const server = await startServerProcess({ dataDir, shards: Number(args.shards) });
const admin = readAdminKeyFile(dataDir);
const reader = await createKey(server.baseUrl, admin, "reader");
const keyOf = new Map<string, string>();
async function agent(name: string): Promise<ReturnType<typeof api>> {
  let key = keyOf.get(name);
  if (key === undefined) {
    key = await createKey(server.baseUrl, admin, "agent", name);
    keyOf.set(name, key);
  }
  return api(server.baseUrl, key);
}
/**
 * The server closes connections idle for ~10 s (docs/api.md); fetch may pick such a pooled
 * connection after a long wrk run, so a request that fails at the socket is sent once more
 * (every request here is idempotent: writes are deduplicated by id, a vote replaces itself).
 */
async function must(send: () => Promise<{ status: number; text: string; json: unknown }>) {
  const r = await send().catch(() => send());
  if (r.status >= 300) throw new Error(`${r.status} ${r.text}`);
  return r.json as Record<string, unknown>;
}

// Seed: 100 assertions on one concept, then 500 votes.
const ids: string[] = [];
for (let i = 0; i < 100; i++) {
  const a = await agent(`author-${i % 20}`);
  const r = await must(() =>
    a.request("POST", "/v1/assert", {
      concept: "lens/hot",
      value: `v${i % 4}`,
      confidence: 0.5 + (i % 5) / 10,
      nonce: `n${i}`,
    }),
  );
  ids.push(r.id as string);
}
for (let v = 0; v < 50; v++) {
  const a = await agent(`voter-${v}`);
  for (let k = 0; k < 10; k++) {
    const id = ids[(v * 7 + k * 13) % ids.length] as string;
    await must(() =>
      a.request("POST", "/v1/vote", { assertion_id: id, vote: (v + k) % 3 === 0 ? "down" : "up" }),
    );
  }
}
// Seed: the subtree, in batches of 1,000.
const bulk = await agent("bulk");
for (let from = 0; from < CONCEPTS; from += 1000) {
  const assertions: Array<{ concept: string; value: number; confidence: number }> = [];
  for (let i = from; i < Math.min(CONCEPTS, from + 1000); i++) {
    assertions.push({ concept: `tree/g${i % 97}/c${i}`, value: i, confidence: 1 });
  }
  await must(() => bulk.request("POST", "/v1/assert", { assertions }));
}

const rows: Array<Record<string, string | number>> = [];
const rps: Record<string, number> = {};
const rate = (name: string): number => rps[name] ?? Number.NaN;
const reads: Array<[string, string]> = [
  ["latest (1 concept)", "/v1/query?concept=lens/hot&lens=latest"],
  ["consensus (100 assertions, 500 votes)", "/v1/query?concept=lens/hot&lens=consensus"],
  ["history (limit 100)", "/v1/query?concept=lens/hot&lens=history&limit=100"],
  [
    `subtree latest, first page of 100 (${CONCEPTS} concepts)`,
    "/v1/query?concept=tree/*&lens=latest&limit=100",
  ],
  [
    `subtree consensus, first page of 100 (${CONCEPTS} concepts)`,
    "/v1/query?concept=tree/*&lens=consensus&limit=100",
  ],
];
for (const [name, p] of reads) {
  for (const c of [1, 16]) {
    const r = runWrk({
      url: server.baseUrl,
      script: "get.lua",
      connections: c,
      seconds: SECONDS,
      env: { STEMEDB_KEY: reader, STEMEDB_PATH: p },
    });
    if (r.non2xx > 0 || r.socket_errors > 0)
      throw new Error(`${name}: ${r.non2xx} non-2xx, ${r.socket_errors} socket errors`);
    rps[`${name}@${c}`] = requestsPerSecond(r);
    rows.push({
      read: name,
      c,
      "req/s": Math.round(requestsPerSecond(r)),
      "p50 ms": (r.p50_us / 1000).toFixed(3),
      "p99 ms": (r.p99_us / 1000).toFixed(3),
    });
  }
}
// A full walk of the subtree, page by page.
const walkStarted = performance.now();
let cursor: string | null = null;
let seen = 0;
let pages = 0;
do {
  const q: string = `/v1/query?concept=tree/*&lens=latest&limit=1000${cursor === null ? "" : `&cursor=${cursor}`}`;
  const page = await must(() => api(server.baseUrl, reader).request("GET", q));
  seen += (page.items as unknown[]).length;
  cursor = page.next_cursor as string | null;
  pages++;
} while (cursor !== null);
const walkMs = performance.now() - walkStarted;
if (seen !== CONCEPTS) throw new Error(`subtree walk saw ${seen} of ${CONCEPTS} concepts`);
await server.stop();
fs.rmSync(root, { recursive: true, force: true });

const lines = [
  "# Lens read benchmark",
  "",
  machineLine(process.cwd()),
  "",
  `Command: npm run bench:lens -- --seconds ${SECONDS} --shards ${args.shards} --concepts ${CONCEPTS} (wrk, bench/wrk/get.lua; server with ${args.shards} shards on the same 2 vCPUs).`,
  "",
  table(rows),
  "",
  `consensus / latest throughput on the same concept: c=1 ${(rate("consensus (100 assertions, 500 votes)@1") / rate("latest (1 concept)@1")).toFixed(2)}, c=16 ${(rate("consensus (100 assertions, 500 votes)@16") / rate("latest (1 concept)@16")).toFixed(2)}.`,
  `Full subtree walk: ${seen} concepts in ${pages} pages of 1000 in ${walkMs.toFixed(0)} ms (${(seen / (walkMs / 1000)).toFixed(0)} concepts/s).`,
];
const text = lines.join("\n");
process.stdout.write(`${text}\n`);
fs.mkdirSync(path.dirname(args.out as string), { recursive: true });
fs.writeFileSync(args.out as string, `${text}\n`);
