// `npm run test:crash -- --iterations N [--wal-iterations M]`: the crash loops.
//  1. the WAL-level loop (wal_crash_harness.ts): a child appends, is SIGKILLed, the log is
//     reopened and checked, M times;
//  2. the server-level loop (server_crash_harness.ts): the real server under concurrent HTTP
//     ingest, SIGKILLed and restarted N times, every acknowledged write checked.
// Prints per-iteration lines, a summary, and `P passed, F failed` where each checked round
// (the whole WAL loop, every server iteration, the final clean restart) is one check.
// Exit code 1 on any loss, duplicate, LSN gap or other problem.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { intArg } from "../helpers/cli_args.js";
import { runServerCrashLoop, type ServerCrashStats } from "./server_crash_harness.js";
import { runWalCrashLoop } from "./wal_crash_harness.js";

const { values } = parseArgs({
  options: {
    iterations: { type: "string", default: "10" },
    "wal-iterations": { type: "string", default: "5" },
    clients: { type: "string", default: "8" },
    "full-check-every": { type: "string", default: "10" },
  },
});

const iterations = intArg("iterations", values.iterations, 0, 100_000);
const walIterations = intArg("wal-iterations", values["wal-iterations"], 0, 100_000);
const clients = intArg("clients", values.clients, 1, 256);
const fullCheckEvery = intArg("full-check-every", values["full-check-every"], 1, 100_000);
const out = (line: string) => process.stdout.write(`${line}\n`);
let passed = 0;
let failed = 0;

if (walIterations > 0) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "stemedb-crash-"));
  try {
    const wal = await runWalCrashLoop(dir, walIterations, out);
    const ok = wal.lost === 0 && wal.duplicated === 0 && wal.lsnGaps === 0;
    out(
      `wal loop: ${wal.iterations} iterations, ${wal.acknowledged} acknowledged, lost ${wal.lost}, ` +
        `duplicated ${wal.duplicated}, lsn gaps ${wal.lsnGaps}, torn tails ${wal.tornTails}`,
    );
    if (ok) passed++;
    else failed++;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (iterations > 0) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "stemedb-srvcrash-"));
  let stats: ServerCrashStats | null = null;
  try {
    stats = await runServerCrashLoop({ iterations, dataDir, clients, fullCheckEvery, log: out });
  } catch (err) {
    out(`server loop aborted: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    out(`data directory kept for inspection: ${dataDir}`);
    failed++;
  }
  if (stats !== null) {
    out(
      `server loop: ${stats.iterations} iterations (${stats.startupKills} kills during startup), ` +
        `${stats.acknowledged} acknowledged writes (${stats.retried} retried after a crash), ` +
        `lost ${stats.lost}, duplicated ${stats.duplicated}, lsn gaps ${stats.lsnGaps}, ` +
        `lsn mismatches ${stats.lsnMismatches}, re-send mismatches ${stats.resendMismatches}, ` +
        `retractions ${stats.retracts} (${stats.retractsLandedUnanswered} found landed by a retry), ` +
        `retractions lost ${stats.retractsLost}, votes ${stats.votes}, votes lost ${stats.votesLost}, ` +
        `supersessions ${stats.supersedes}, supersessions lost ${stats.supersedesLost}, ` +
        `torn tails ${stats.tornTails}, WAL rotations ${stats.rotations}, ` +
        `final shard LSNs ${stats.maxLsn.join("/")}, ` +
        `duplicate acks ahead of their original ${stats.earlyDuplicateAcks}/${stats.racePairs} racing pairs`,
    );
    for (const p of stats.problems.slice(0, 30)) out(`  problem: ${p}`);
    passed += stats.checksPassed;
    failed += stats.checksFailed;
    const clean =
      stats.lost === 0 &&
      stats.duplicated === 0 &&
      stats.lsnGaps === 0 &&
      stats.lsnMismatches === 0 &&
      stats.retractsLost === 0 &&
      stats.votesLost === 0 &&
      stats.supersedesLost === 0 &&
      stats.resendMismatches === 0 &&
      stats.problems.length === 0; // e.g. a first retraction answered as a duplicate
    if (!clean && stats.checksFailed === 0) failed++;
    if (failed === 0) fs.rmSync(dataDir, { recursive: true, force: true });
    else out(`data directory kept for inspection: ${dataDir}`);
  }
}

out(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
