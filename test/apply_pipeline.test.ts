// The LMDB apply pipeline on a real shard (WAL with fsync + LMDB): durable writes are served
// from memory until one delayed commit takes them all, settled() forces that commit, and a
// close or a kill loses nothing.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ShardCore } from "../src/shard/shard_core.js";
import { sampleAssertion } from "./helpers/records.js";
import { tempDir } from "./helpers/wal_fixtures.js";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

interface Commit {
  records: number;
  ok: boolean;
}

async function openCore(
  dir: string,
  applyDelayMs: number,
  commits: Commit[] = [],
): Promise<ShardCore> {
  return ShardCore.open({
    shardId: 0,
    walDir: path.join(dir, "wal"),
    dbDir: path.join(dir, "db"),
    segmentSizeBytes: 1024 * 1024,
    applyDelayMs,
    onApplied: (records, _seconds, ok) => commits.push({ records, ok }),
  });
}

function idOf(i: number): string {
  return i.toString(16).padStart(32, "0");
}

function write(core: ShardCore, i: number): Promise<number> {
  return new Promise((resolve, reject) =>
    core.write([sampleAssertion(i, 5, "apply")], (err, outcome) =>
      err === null && outcome !== null ? resolve(outcome.lsns[0] as number) : reject(err),
    ),
  );
}

describe("apply pipeline", () => {
  it("serves acknowledged writes from memory, then commits many WAL flushes in one LMDB transaction", async () => {
    const dir = tempDir("stemedb-apply-");
    dirs.push(dir);
    const commits: Commit[] = [];
    const core = await openCore(dir, 1000, commits);
    // 20 writes, each awaited: 20 separate WAL flushes (each one fsync).
    for (let i = 1; i <= 20; i++) expect(await write(core, i)).toBe(i);
    expect(core.wal.durableLsn).toBe(20);
    // Within the delay nothing is in LMDB, yet every write is readable.
    expect(commits).toEqual([]);
    expect(core.store.has(idOf(7))).toBe(false);
    expect(core.getAssertion(idOf(7))?.lsn).toBe(7);
    // Range reads wait for settled(), which commits now instead of after the delay.
    const started = performance.now();
    await core.settled();
    expect(performance.now() - started).toBeLessThan(900);
    expect(commits).toEqual([{ records: 20, ok: true }]);
    expect(core.store.has(idOf(7))).toBe(true);
    expect(core.store.appliedLsn).toBe(20);
    await core.close();
  });

  it("works a backlog off in commits of at most 10,000 records (whole WAL batches)", async () => {
    const dir = tempDir("stemedb-apply-");
    dirs.push(dir);
    const commits: Commit[] = [];
    const core = await openCore(dir, 1000, commits);
    // 25 writes of 1000 records, each awaited: 25 WAL flushes queued behind the delay.
    for (let b = 0; b < 25; b++) {
      const records = Array.from({ length: 1000 }, (_, k) =>
        sampleAssertion(100 + b * 1000 + k, 5, "apply"),
      );
      await new Promise<void>((resolve, reject) =>
        core.write(records, (err) => (err === null ? resolve() : reject(err))),
      );
    }
    await core.settled();
    expect(commits.map((c) => c.records)).toEqual([10_000, 10_000, 5_000]);
    expect(commits.every((c) => c.ok)).toBe(true);
    expect(core.store.appliedLsn).toBe(25_000);
    expect(core.store.has(idOf(100 + 24_999))).toBe(true);
    await core.close();
  });

  it("commits on its own once the delay passes", async () => {
    const dir = tempDir("stemedb-apply-");
    dirs.push(dir);
    const commits: Commit[] = [];
    const core = await openCore(dir, 30, commits);
    await write(core, 1);
    await write(core, 2);
    const deadline = Date.now() + 5_000;
    while (commits.length === 0 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 5));
    expect(commits).toEqual([{ records: 2, ok: true }]);
    expect(core.store.appliedLsn).toBe(2);
    await core.close();
  });

  it("commits everything on close, so a restart replays nothing", async () => {
    const dir = tempDir("stemedb-apply-");
    dirs.push(dir);
    const core = await openCore(dir, 1000);
    for (let i = 1; i <= 5; i++) await write(core, i);
    await core.close();
    const reopened = await openCore(dir, 1000);
    expect(reopened.recovery.replayedRecords).toBe(0);
    expect(reopened.store.appliedLsn).toBe(5);
    expect(reopened.store.has(idOf(5))).toBe(true);
    await reopened.close();
  });

  it("loses no acknowledged write when the process is killed before the commit", async () => {
    const dir = tempDir("stemedb-apply-");
    dirs.push(dir);
    // A child writes with a long delay, prints its acknowledged LSNs, and is killed (SIGKILL)
    // by itself before LMDB ever commits.
    const child = spawnSync(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `
        const { ShardCore } = await import(${JSON.stringify(path.resolve("dist/src/shard/shard_core.js"))});
        const { sampleAssertion } = await import(${JSON.stringify(path.resolve("dist/test/helpers/records.js"))});
        const core = await ShardCore.open({ shardId: 0, walDir: ${JSON.stringify(path.join(dir, "wal"))},
          dbDir: ${JSON.stringify(path.join(dir, "db"))}, segmentSizeBytes: 1048576, applyDelayMs: 1000 });
        for (let i = 1; i <= 10; i++) {
          await new Promise((resolve, reject) => core.write([sampleAssertion(i, 5, "apply")],
            (err, out) => (err ? reject(err) : (process.stdout.write("acked " + out.lsns[0] + "\\n"), resolve()))));
        }
        process.kill(process.pid, "SIGKILL");
        `,
      ],
      { encoding: "utf8", timeout: 30_000 },
    );
    expect(child.signal).toBe("SIGKILL");
    expect(child.stdout.trim().split("\n")).toHaveLength(10);
    const reopened = await openCore(dir, 1000);
    expect(reopened.recovery.replayedRecords).toBe(10);
    for (let i = 1; i <= 10; i++) expect(reopened.getAssertion(idOf(i))?.lsn).toBe(i);
    await reopened.close();
  });
});
