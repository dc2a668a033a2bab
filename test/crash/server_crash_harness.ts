// The server-level crash loop: a real server (2 shards, 1 MiB WAL segments so segments rotate)
// takes concurrent single and batch HTTP writes; it is SIGKILLed at a random moment (now and
// then already during startup/recovery), restarted, and checked:
//  - every acknowledged id is readable (GET 200) with the LSN and shard its ack reported;
//  - nothing is stored twice (its unique concept's history has exactly one item);
//  - per shard, the LSNs of all stored assertions run 1..max without gap or repeat, and max is
//    the shard's durable LSN in /v1/health;
//  - a retried write (same content) returns the same id, duplicate:true, its original LSN;
//  - every acknowledged retraction, vote and supersession (a quarter of the requests change
//    an acknowledged write) still holds, and its LSN is accounted for like a write's
//    (state_changes.ts, server_crash_verify.ts).
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
import { type Acked, http, type Seen, verify } from "./server_crash_verify.js";
import { StateChanges } from "./state_changes.js";

const MAIN = path.join(path.dirname(fileURLToPath(import.meta.url)), "../../src/server/main.js");
/** Cap on acked items re-sent per iteration to check dedup across restarts. */
const RESEND_SAMPLE = 64;
/** Shares of client requests that retract, vote on or supersede an acknowledged write. */
const RETRACT_SHARE = 0.1;
const VOTE_SHARE = 0.1;
const SUPERSEDE_SHARE = 0.05;

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
  /** Retractions acknowledged, or answered "already retracted" by a retry after a crash. */
  retracts: number;
  /** Of those, ones that found the retraction had landed before the crash. */
  retractsLandedUnanswered: number;
  /** Retractions in force before a crash and undone after it. */
  retractsLost: number;
  /** Votes acknowledged, by a second agent. */
  votes: number;
  /** Acknowledged votes missing (or different) after a crash. */
  votesLost: number;
  /** Supersessions acknowledged (a retry's duplicate answer included). */
  supersedes: number;
  /** Acknowledged supersessions undone after a crash. */
  supersedesLost: number;
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
interface WriteResult {
  id: string;
  lsn: number;
  shard: number;
  duplicate: boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const rand = (min: number, max: number) => min + Math.floor(Math.random() * (max - min + 1));

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
    retracts: 0,
    retractsLandedUnanswered: 0,
    retractsLost: 0,
    votes: 0,
    votesLost: 0,
    supersedes: 0,
    supersedesLost: 0,
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
    retractsLost: new Set(),
    votesLost: new Set(),
    supersedesLost: new Set(),
  };
  let unanswered: Array<{ items: Item[]; batch: boolean }> = [];
  let server: ServerProcess = await start();
  const adminKey = readAdminKeyFile(dataDir);
  const key = await createKey(server.baseUrl, adminKey, "agent", "crash-agent");
  const voterKey = await createKey(server.baseUrl, adminKey, "agent", "crash-voter");
  const changes = new StateChanges(key, voterKey, "crash-voter", stats);

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
      changes.offer(r.id);
    });
  };
  try {
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
      await changes.retryPending(server.baseUrl, (id) => (acked.get(id) as Acked).concept);
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
          const roll = Math.random();
          const target =
            roll < RETRACT_SHARE + VOTE_SHARE + SUPERSEDE_SHARE ? changes.take() : null;
          if (target !== null) {
            const alive =
              roll < RETRACT_SHARE
                ? await changes.retract(running.baseUrl, target, false)
                : roll < RETRACT_SHARE + VOTE_SHARE
                  ? await changes.vote(running.baseUrl, target)
                  : await changes.supersede(
                      running.baseUrl,
                      target,
                      (acked.get(target) as Acked).concept,
                      false,
                    );
            if (!alive) return; // the server is gone
            continue;
          }
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
      const v = await verify(server, key, acked, changes.log, iteration, seen, full);
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
          `torn tails ${v.tornTails}, rotations ${rotations}, ` +
          `retractions ${stats.retracts}, votes ${stats.votes}, supersessions ${stats.supersedes}${v.problems.length > 0 ? ` — ${v.problems[0]}` : ""}`,
      );
    }

    // A clean stop and start must keep everything too (checkpoint + recycled segments path).
    const code = await server.stop();
    if (code !== 0) stats.problems.push(`SIGTERM exit code ${code}`);
    server = await start();
    const v = await verify(server, key, acked, changes.log, 0, seen, true);
    if (v.problems.length === 0 && code === 0) stats.checksPassed++;
    else {
      stats.checksFailed++;
      stats.problems.push(...v.problems.slice(0, 20));
    }
    log(
      `after a clean restart: ${acked.size} acked, lost ${v.lost}, duplicated ${v.duplicated}, lsn gaps ${v.gaps}`,
    );
    stats.maxLsn = v.maxLsn;
  } catch (err) {
    // An aborted loop must not leave its server running.
    await server.kill9();
    throw err;
  }
  await server.kill9();
  stats.acknowledged = acked.size;
  stats.lost = seen.lost.size;
  stats.duplicated = seen.duplicated.size;
  stats.lsnGaps = seen.gaps;
  stats.lsnMismatches = seen.lsnMismatches.size;
  stats.retractsLost = seen.retractsLost.size;
  stats.votesLost = seen.votesLost.size;
  stats.supersedesLost = seen.supersedesLost.size;
  stats.tornTails = seen.tornTails;
  return stats;
}

function itemFor(concept: string): Item {
  // Value size varies so WAL records vary, and is big enough that 1 MiB segments rotate.
  const n = Number(/n(\d+)$/.exec(concept)?.[1] ?? 0);
  return { concept, value: { n, pad: "p".repeat(100 + ((n * 37) % 1400)) }, confidence: 0.7 };
}
