// The server-level crash loop: a real server (2 shards, 1 MiB WAL segments so segments rotate)
// takes concurrent single and batch HTTP writes; it is SIGKILLed at a random moment (now and
// then already during startup/recovery), restarted, and checked:
//  - every acknowledged id is readable (GET 200) with the LSN and shard its ack reported;
//  - nothing is stored twice (its unique concept's history has exactly one item);
//  - per shard, the LSNs of all stored assertions run 1..max without gap or repeat, and max is
//    the shard's durable LSN in /v1/health;
//  - a retried write (same content) returns the same id, duplicate:true, its original LSN.
// Requests that got no answer are retried after the restart, as a client would.
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  createKey,
  newDataDir,
  readAdminKeyFile,
  type ServerProcess,
  startServerProcess,
} from "../helpers/server_process.js";

const MAIN = path.join(path.dirname(fileURLToPath(import.meta.url)), "../../src/server/main.js");
const REQUEST_TIMEOUT_MS = 30_000;
const VERIFY_CONCURRENCY = 16;
const PAGE_LIMIT = 1000;
/** Cap on acked items re-sent per iteration to check dedup across restarts. */
const RESEND_SAMPLE = 64;

export interface ServerCrashOptions {
  iterations: number;
  dataDir?: string;
  shards?: number;
  segmentBytes?: number;
  clients?: number;
  /** Random kill moment after ingest starts, in ms. */
  killAfterMs?: { min: number; max: number };
  /**
   * Full check (every stored assertion listed, LSN runs contiguous) every N iterations and
   * after the final clean restart; in between only this iteration's writes are checked (by
   * id and history), so long loops do not grow quadratically. Default 1 (always full).
   */
  fullCheckEvery?: number;
  log?: (line: string) => void;
}

export interface ServerCrashStats {
  iterations: number;
  acknowledged: number;
  retried: number;
  lost: number;
  duplicated: number;
  lsnGaps: number;
  lsnMismatches: number;
  resendMismatches: number;
  /** Pairs of identical writes sent at once. */
  racePairs: number;
  /** Of those, pairs whose duplicate:true ack arrived before the original's ack. */
  earlyDuplicateAcks: number;
  startupKills: number;
  rotations: number;
  tornTails: number;
  maxLsn: number[];
  problems: string[];
  checksPassed: number;
  checksFailed: number;
}

interface Item {
  concept: string;
  value: unknown;
  confidence: number;
}
interface Acked {
  id: string;
  concept: string;
  lsn: number;
  shard: number;
  /** Iteration that acked it (history is re-checked for the newest ones every iteration). */
  iteration: number;
}
interface WriteResult {
  id: string;
  lsn: number;
  shard: number;
  duplicate: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const rand = (min: number, max: number) => min + Math.floor(Math.random() * (max - min + 1));

async function http(
  baseUrl: string,
  key: string,
  method: string,
  urlPath: string,
  body?: unknown,
): Promise<{ status: number; json: unknown }> {
  const res = await fetch(baseUrl + urlPath, {
    method,
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const text = await res.text();
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, json };
}

/** Posts one request (single or batch); null when it got no 201. */
async function postItems(
  baseUrl: string,
  key: string,
  items: Item[],
  batch: boolean,
): Promise<WriteResult[] | null> {
  const res = await http(
    baseUrl,
    key,
    "POST",
    "/v1/assert",
    batch ? { assertions: items } : items[0],
  );
  if (res.status !== 201) {
    if (res.status < 500)
      throw new Error(`write refused with ${res.status}: ${JSON.stringify(res.json)}`);
    return null;
  }
  return batch ? (res.json as { results: WriteResult[] }).results : [res.json as WriteResult];
}

async function pool<T>(
  items: readonly T[],
  n: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < items.length) await fn(items[next++] as T);
    }),
  );
}

function rotationsFrom(metricsText: string): number {
  let sum = 0;
  for (const m of metricsText.matchAll(/^stemedb_wal_rotations_total(?:\{[^}]*\})? (\d+)/gm))
    sum += Number(m[1]);
  return sum;
}

/** Spawns the server and SIGKILLs it after `ms`, listening or not (a crash during recovery). */
function killDuringStartup(
  dataDir: string,
  shards: number,
  segmentBytes: number,
  ms: number,
): Promise<void> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN], {
      env: {
        ...process.env,
        STEMEDB_DATA_DIR: dataDir,
        STEMEDB_BIND_ADDR: "127.0.0.1:0",
        STEMEDB_SHARDS: String(shards),
        STEMEDB_WAL_SEGMENT_BYTES: String(segmentBytes),
      },
      stdio: "ignore",
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), ms);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

export async function runServerCrashLoop(opts: ServerCrashOptions): Promise<ServerCrashStats> {
  const log = opts.log ?? (() => {});
  const shards = opts.shards ?? 2;
  const segmentBytes = opts.segmentBytes ?? 1024 * 1024;
  const clients = opts.clients ?? 8;
  const killWindow = opts.killAfterMs ?? { min: 300, max: 1500 };
  const dataDir = opts.dataDir ?? newDataDir();
  const env = { STEMEDB_WAL_SEGMENT_BYTES: String(segmentBytes) };
  const start = () => startServerProcess({ dataDir, shards, env });
  const stats: ServerCrashStats = {
    iterations: 0,
    acknowledged: 0,
    retried: 0,
    lost: 0,
    duplicated: 0,
    lsnGaps: 0,
    lsnMismatches: 0,
    resendMismatches: 0,
    racePairs: 0,
    earlyDuplicateAcks: 0,
    startupKills: 0,
    rotations: 0,
    tornTails: 0,
    maxLsn: [],
    problems: [],
    checksPassed: 0,
    checksFailed: 0,
  };
  const acked = new Map<string, Acked>();
  const seen: Seen = {
    lost: new Set(),
    duplicated: new Set(),
    lsnMismatches: new Set(),
    gaps: 0,
    tornTails: 0,
  };
  let unanswered: Array<{ items: Item[]; batch: boolean }> = [];
  let server: ServerProcess = await start();
  const key = await createKey(server.baseUrl, readAdminKeyFile(dataDir), "agent", "crash-agent");

  const record = (items: Item[], results: WriteResult[], iteration: number) => {
    results.forEach((r, i) => {
      const prior = acked.get(r.id);
      if (prior !== undefined) {
        if (prior.lsn !== r.lsn || !r.duplicate) {
          stats.resendMismatches++;
          stats.problems.push(
            `re-ack of ${r.id}: lsn ${r.lsn} (first ${prior.lsn}), duplicate ${r.duplicate}`,
          );
        }
        return;
      }
      acked.set(r.id, {
        id: r.id,
        concept: (items[i] as Item).concept,
        lsn: r.lsn,
        shard: r.shard,
        iteration,
      });
    });
  };

  for (let iteration = 0; iteration < opts.iterations; iteration++) {
    const ackedBefore = acked.size;
    // Retry what got no answer before the crash: same content, so the same ids.
    const retries = unanswered;
    unanswered = [];
    for (const r of retries) {
      const results = await postItems(server.baseUrl, key, r.items, r.batch);
      if (results === null) throw new Error("a retry after restart got a 5xx");
      stats.retried += r.items.length;
      record(r.items, results, iteration);
    }
    // Re-send a sample of acknowledged items: must be duplicates with their original LSN.
    const sample = [...acked.values()].sort(() => Math.random() - 0.5).slice(0, RESEND_SAMPLE);
    for (const a of sample) {
      const item = itemFor(a.concept);
      const results = await postItems(server.baseUrl, key, [item], false);
      if (results !== null) record([item], results, iteration);
    }

    const running = server;
    let dead = false;
    let rotations = 0;
    const scraper = (async () => {
      while (!dead) {
        try {
          const res = await fetch(`${running.baseUrl}/metrics`, {
            signal: AbortSignal.timeout(2000),
          });
          rotations = Math.max(rotations, rotationsFrom(await res.text()));
        } catch {
          return;
        }
        await sleep(100);
      }
    })();
    let seq = 0;
    const client = async (c: number) => {
      while (!dead) {
        const batch = Math.random() < 0.3;
        const items = Array.from({ length: batch ? rand(2, 40) : 1 }, () =>
          itemFor(`crash/i${iteration}/c${c}/n${seq++}`),
        );
        const race = !batch && Math.random() < 0.05;
        try {
          if (race) {
            // The same write twice at once: one is new, the other a duplicate of it.
            let order = 0;
            const tagged = (p: Promise<WriteResult[] | null>) =>
              p.then((r) => ({ r, at: order++ }));
            const settled = await Promise.allSettled([
              tagged(postItems(running.baseUrl, key, items, false)),
              tagged(postItems(running.baseUrl, key, items, false)),
            ]);
            const answers = settled.flatMap((x) =>
              x.status === "fulfilled" && x.value.r !== null ? [x.value] : [],
            );
            // Record the original (duplicate:false) first so the other counts as its re-ack.
            const byOriginal = [...answers].sort(
              (x, y) => Number(x.r?.[0]?.duplicate) - Number(y.r?.[0]?.duplicate),
            );
            for (const a of byOriginal) record(items, a.r as WriteResult[], iteration);
            if (answers.length < 2) {
              unanswered.push({ items, batch: false });
              if (settled.some((x) => x.status === "rejected")) return; // the server is gone
              continue;
            }
            const [a, b] = answers as [(typeof answers)[0], (typeof answers)[0]];
            stats.racePairs++;
            const dupFirst = a.r?.[0]?.duplicate === true ? a.at < b.at : b.at < a.at;
            if (dupFirst) stats.earlyDuplicateAcks++;
            continue;
          }
          const results = await postItems(running.baseUrl, key, items, batch);
          if (results === null) unanswered.push({ items, batch });
          else record(items, results, iteration);
        } catch (err) {
          if (String(err).includes("write refused")) throw err;
          unanswered.push({ items, batch });
          return; // connection refused or reset: the server is gone
        }
      }
    };
    const ingest = Promise.all(Array.from({ length: clients }, (_, c) => client(c)));
    const killAfterMs = rand(killWindow.min, killWindow.max);
    await sleep(killAfterMs);
    await running.kill9();
    dead = true;
    await ingest;
    await scraper;
    stats.rotations += rotations;

    if (Math.random() < 0.25) {
      stats.startupKills++;
      await killDuringStartup(dataDir, shards, segmentBytes, rand(20, 400));
    }
    server = await start();
    const full = (iteration + 1) % (opts.fullCheckEvery ?? 1) === 0;
    const v = await verify(server, key, acked, iteration, seen, full);
    stats.iterations++;
    if (v.problems.length === 0) stats.checksPassed++;
    else {
      stats.checksFailed++;
      stats.problems.push(...v.problems.slice(0, 20));
    }
    log(
      `server iteration ${iteration + 1}/${opts.iterations}: killed after ${killAfterMs} ms, ` +
        `+${acked.size - ackedBefore} acked (${acked.size} total, ${unanswered.length} requests unanswered), ` +
        `lost ${v.lost}, duplicated ${v.duplicated}, lsn gaps ${v.gaps}, shard LSNs ${v.maxLsn.join("/")}, ` +
        `torn tails ${v.tornTails}, rotations ${rotations}${v.problems.length > 0 ? ` — ${v.problems[0]}` : ""}`,
    );
  }

  // A clean stop and start must keep everything too (checkpoint + recycled segments path).
  const code = await server.stop();
  if (code !== 0) stats.problems.push(`SIGTERM exit code ${code}`);
  server = await start();
  const v = await verify(server, key, acked, 0, seen, true);
  if (v.problems.length === 0 && code === 0) stats.checksPassed++;
  else {
    stats.checksFailed++;
    stats.problems.push(...v.problems.slice(0, 20));
  }
  log(
    `after a clean restart: ${acked.size} acked, lost ${v.lost}, duplicated ${v.duplicated}, lsn gaps ${v.gaps}`,
  );
  await server.kill9();
  stats.acknowledged = acked.size;
  stats.maxLsn = v.maxLsn;
  stats.lost = seen.lost.size;
  stats.duplicated = seen.duplicated.size;
  stats.lsnGaps = seen.gaps;
  stats.lsnMismatches = seen.lsnMismatches.size;
  stats.tornTails = seen.tornTails;
  return stats;
}

function itemFor(concept: string): Item {
  // Value size varies so WAL records vary, and is big enough that 1 MiB segments rotate.
  const n = Number(/n(\d+)$/.exec(concept)?.[1] ?? 0);
  return { concept, value: { n, pad: "p".repeat(100 + ((n * 37) % 1400)) }, confidence: 0.7 };
}

/** Distinct problems over all verifications (an id lost once stays lost; count it once). */
interface Seen {
  lost: Set<string>;
  duplicated: Set<string>;
  lsnMismatches: Set<string>;
  gaps: number;
  tornTails: number;
}

interface Verification {
  lost: number;
  duplicated: number;
  gaps: number;
  tornTails: number;
  maxLsn: number[];
  problems: string[];
}

/** Checks every acked id; the history of items acked in `fromIteration` or later. */
async function verify(
  server: ServerProcess,
  key: string,
  acked: Map<string, Acked>,
  fromIteration: number,
  seen: Seen,
  full: boolean,
): Promise<Verification> {
  const out: Verification = {
    lost: 0,
    duplicated: 0,
    gaps: 0,
    tornTails: 0,
    maxLsn: [],
    problems: [],
  };
  const health = await http(server.baseUrl, key, "GET", "/v1/health");
  const shardInfo = (
    health.json as {
      shards: Array<{
        shard: number;
        status: string;
        last_lsn: number;
        recovery: { torn_tail_truncations: number };
      }>;
    }
  ).shards;
  if (health.status !== 200)
    out.problems.push(`health ${health.status}: ${JSON.stringify(health.json).slice(0, 300)}`);
  for (const s of shardInfo) out.tornTails += s.recovery?.torn_tail_truncations ?? 0;
  seen.tornTails += out.tornTails;

  // Every stored assertion, via the subtree lens (each concept holds exactly one assertion).
  const stored = new Map<string, { lsn: number; shard: number; concept: string }>();
  let cursor: string | null = null;
  for (let page = 0; full && page < 100_000; page++) {
    const q: string = `/v1/query?concept=crash/*&limit=${PAGE_LIMIT}${cursor ? `&cursor=${cursor}` : ""}`;
    const res = await http(server.baseUrl, key, "GET", q);
    if (res.status !== 200) {
      out.problems.push(`subtree query ${res.status}: ${JSON.stringify(res.json).slice(0, 300)}`);
      break;
    }
    const body = res.json as {
      items: Array<{ id: string; lsn: number; shard: number; concept: string }>;
      next_cursor: string | null;
    };
    for (const it of body.items) {
      if (stored.has(it.id)) out.problems.push(`subtree listed ${it.id} twice`);
      stored.set(it.id, { lsn: it.lsn, shard: it.shard, concept: it.concept });
    }
    cursor = body.next_cursor;
    if (cursor === null) break;
  }

  const missing: Acked[] = [];
  for (const a of acked.values()) {
    if (!full && a.iteration < fromIteration) continue; // checked by an earlier full pass
    const s = stored.get(a.id);
    if (s === undefined) missing.push(a);
    else if (s.lsn !== a.lsn || s.shard !== a.shard) {
      seen.lsnMismatches.add(a.id);
      out.problems.push(`${a.id}: acked lsn ${a.shard}:${a.lsn}, stored ${s.shard}:${s.lsn}`);
    }
  }
  await pool(missing, VERIFY_CONCURRENCY, async (a) => {
    const res = await http(server.baseUrl, key, "GET", `/v1/assertions/${a.id}`);
    if (res.status !== 200) {
      out.lost++;
      seen.lost.add(a.id);
      out.problems.push(
        `LOST ${a.id} (${a.concept}, acked at ${a.shard}:${a.lsn}): GET ${res.status}`,
      );
    } else if (full) {
      out.problems.push(`${a.id} readable by id but missing from the subtree query`);
    } else {
      const got = res.json as { lsn?: number; shard?: number };
      if (got.lsn !== a.lsn || got.shard !== a.shard) {
        seen.lsnMismatches.add(a.id);
        out.problems.push(`${a.id}: acked lsn ${a.shard}:${a.lsn}, stored ${got.shard}:${got.lsn}`);
      }
    }
  });

  const recent = [...acked.values()].filter((a) => a.iteration >= fromIteration);
  await pool(recent, VERIFY_CONCURRENCY, async (a) => {
    const res = await http(
      server.baseUrl,
      key,
      "GET",
      `/v1/query?concept=${a.concept}&lens=history`,
    );
    const items = (res.json as { items?: Array<{ id: string }> }).items ?? [];
    if (res.status !== 200 || items.length !== 1 || items[0]?.id !== a.id) {
      out.duplicated++;
      seen.duplicated.add(a.id);
      out.problems.push(`${a.concept}: history ${res.status} with ${items.length} items`);
    }
  });

  // Per shard, LSNs 1..max exactly once, and max is the durable LSN the shard reports.
  if (!full) {
    for (const sh of shardInfo) out.maxLsn.push(sh.last_lsn);
    seen.gaps += out.gaps;
    return out;
  }
  const byShard: number[][] = Array.from({ length: shardInfo.length }, () => []);
  for (const s of stored.values()) byShard[s.shard]?.push(s.lsn);
  byShard.forEach((lsns, shard) => {
    lsns.sort((a, b) => a - b);
    for (let i = 0; i < lsns.length; i++) {
      if (lsns[i] !== i + 1) {
        out.gaps++;
        out.problems.push(`shard ${shard}: LSN ${i + 1} expected, found ${lsns[i]} (run breaks)`);
        break;
      }
    }
    const max = lsns.length === 0 ? 0 : (lsns[lsns.length - 1] as number);
    out.maxLsn.push(max);
    const durable = shardInfo[shard]?.last_lsn;
    if (durable !== max) {
      out.gaps++;
      out.problems.push(`shard ${shard}: highest stored LSN ${max}, durable LSN ${durable}`);
    }
  });
  seen.gaps += out.gaps;
  return out;
}
