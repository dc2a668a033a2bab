// The WAL crash loop: a child appends continuously and reports acknowledged LSNs; the parent
// SIGKILLs it at a random moment, reopens the log, and checks that every acknowledged record
// is present exactly once and that LSNs run without gaps.
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Wal } from "../../src/wal/wal.js";

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), "wal_writer_child.js");

export interface CrashLoopStats {
  iterations: number;
  acknowledged: number;
  lost: number;
  duplicated: number;
  lsnGaps: number;
  tornTails: number;
}

function runChildUntilKilled(
  dir: string,
  tag: string,
  killAfterMs: number,
): Promise<Map<string, number>> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, dir, tag], { stdio: ["ignore", "pipe", "pipe"] });
    const acked = new Map<string, number>();
    let buffered = "";
    let stderr = "";
    let timer: NodeJS.Timeout | null = null;
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split("\n");
      buffered = lines.pop() ?? "";
      for (const line of lines) {
        if (line.startsWith("ready") && timer === null) {
          timer = setTimeout(() => child.kill("SIGKILL"), killAfterMs);
          continue;
        }
        const [word, lsn, ackTag] = line.split(" ");
        if (word === "ack" && lsn !== undefined && ackTag !== undefined)
          acked.set(ackTag, Number(lsn));
      }
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on("exit", (code, signal) => {
      if (timer !== null) clearTimeout(timer);
      if (signal === "SIGKILL") resolve(acked);
      else reject(new Error(`writer exited with ${code ?? signal}: ${stderr}`));
    });
  });
}

export async function runWalCrashLoop(
  dir: string,
  iterations: number,
  log: (line: string) => void = () => {},
): Promise<CrashLoopStats> {
  const stats: CrashLoopStats = {
    iterations: 0,
    acknowledged: 0,
    lost: 0,
    duplicated: 0,
    lsnGaps: 0,
    tornTails: 0,
  };
  const allAcked = new Map<string, number>();
  for (let i = 0; i < iterations; i++) {
    const killAfterMs = 20 + Math.floor(Math.random() * 250);
    const acked = await runChildUntilKilled(dir, `i${i}`, killAfterMs);
    for (const [tag, lsn] of acked) allAcked.set(tag, lsn);

    const seen = new Map<string, number>();
    let expectedLsn = 1;
    const wal = await Wal.open({
      dir,
      shardId: 0,
      segmentSizeBytes: 1024 * 1024,
      checkpointLsn: 0,
      onRecord: (_kind, lsn, payload) => {
        if (lsn !== expectedLsn) stats.lsnGaps++;
        expectedLsn = lsn + 1;
        const tag = payload.toString("latin1").replace(/\.+$/, "");
        seen.set(tag, (seen.get(tag) ?? 0) + 1);
      },
    });
    stats.tornTails += wal.recovery.tornTailTruncations;
    await wal.close();
    let lost = 0;
    let duplicated = 0;
    for (const [tag, lsn] of allAcked) {
      const count = seen.get(tag) ?? 0;
      if (count === 0) {
        lost++;
        log(`LOST ${tag} (lsn ${lsn})`);
      }
      if (count > 1) duplicated++;
    }
    stats.iterations++;
    stats.acknowledged = allAcked.size;
    stats.lost += lost;
    stats.duplicated += duplicated;
    log(
      `iteration ${i + 1}: killed after ${killAfterMs} ms, ${acked.size} new acks, ` +
        `${allAcked.size} acknowledged in total, replayed ${seen.size}, lost ${lost}, duplicated ${duplicated}`,
    );
  }
  return stats;
}
