import fs from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { WRITE_DUPLICATE } from "../src/shard/core_options.js";
import { ShardCore } from "../src/shard/shard_core.js";
import { archiveSegment } from "../src/wal/segment_files.js";
import { bigAssertion, sampleAssertion } from "./helpers/records.js";
import { tempDir } from "./helpers/wal_fixtures.js";

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function record(i: number): Uint8Array {
  return sampleAssertion(i, 3, "core");
}

async function openCore(): Promise<ShardCore> {
  const dir = tempDir("stemedb-core-");
  dirs.push(dir);
  return ShardCore.open({
    shardId: 0,
    walDir: path.join(dir, "wal"),
    dbDir: path.join(dir, "db"),
    segmentSizeBytes: 1024 * 1024,
  });
}

describe("shard core", () => {
  it("acknowledges a duplicate of an in-flight write only once the original is durable", async () => {
    const core = await openCore();
    const events: string[] = [];
    const first = new Promise<void>((resolve) =>
      core.write([record(1)], (err, outcome) => {
        expect(err).toBeNull();
        events.push(`original lsn ${outcome?.lsns[0]} durable ${core.wal.durableLsn}`);
        resolve();
      }),
    );
    const second = new Promise<void>((resolve) =>
      core.write([record(1)], (err, outcome) => {
        expect(err).toBeNull();
        expect(outcome?.flags[0]).toBe(WRITE_DUPLICATE);
        // The original (LSN 1) must be on disk before its duplicate is acknowledged.
        expect(core.wal.durableLsn).toBeGreaterThanOrEqual(outcome?.lsns[0] as number);
        events.push(`duplicate lsn ${outcome?.lsns[0]} durable ${core.wal.durableLsn}`);
        resolve();
      }),
    );
    await Promise.all([first, second]);
    expect(events).toEqual(["original lsn 1 durable 1", "duplicate lsn 1 durable 1"]);
    await core.close();
  });

  it("serves acknowledged writes before LMDB commits them, and after a restart", async () => {
    const core = await openCore();
    const lsns = await new Promise<Float64Array>((resolve, reject) =>
      core.write([record(10), record(11), record(12)], (err, outcome) =>
        err === null && outcome !== null ? resolve(outcome.lsns) : reject(err),
      ),
    );
    expect([...lsns]).toEqual([1, 2, 3]);
    // Right after the acknowledgement, before awaiting LMDB's commit.
    expect(core.getAssertion((10).toString(16).padStart(32, "0"))?.lsn).toBe(1);
    expect(core.latest("core/c0")?.valueJson).toBe("12");
    await core.settled();
    expect(core.store.getAssertion((11).toString(16).padStart(32, "0"))?.lsn).toBe(2);
    await core.close();
  });

  it("archives every released segment under a new name, across restarts", async () => {
    const dir = tempDir("stemedb-core-archive-");
    dirs.push(dir);
    const archiveDir = path.join(dir, "archive");
    const options = {
      shardId: 0,
      walDir: path.join(dir, "wal"),
      dbDir: path.join(dir, "db"),
      segmentSizeBytes: 1024 * 1024,
      walArchiveDir: archiveDir,
    };
    const big = (i: number) => bigAssertion(i, "archive", 2_000);
    const session = async (first: number) => {
      const core = await ShardCore.open(options);
      // ≈ 3 MiB of records: a few segments per session.
      for (let i = first; i < first + 1_500; i += 100) {
        const records = Array.from({ length: 100 }, (_, k) => big(i + k));
        await new Promise<void>((resolve, reject) =>
          core.write(records, (err) => (err === null ? resolve() : reject(err))),
        );
      }
      await core.close(); // checkpoints, and so archives what it releases
    };
    const archived = () =>
      new Map(
        fs
          .readdirSync(archiveDir)
          .filter((name) => name.endsWith(".seg"))
          .map((name) => [name, fs.readFileSync(path.join(archiveDir, name)).toString("base64")]),
      );
    await session(1);
    const afterFirst = archived();
    expect(afterFirst.size).toBeGreaterThan(0);
    await session(100_001);
    const afterSecond = archived();
    expect(afterSecond.size).toBeGreaterThan(afterFirst.size);
    // Nothing archived by the first session was overwritten by the second.
    for (const [name, content] of afterFirst) expect(afterSecond.get(name), name).toBe(content);
  });

  it("never replaces an archived segment: a taken name gets a numbered one", async () => {
    const dir = tempDir("stemedb-archive-names-");
    dirs.push(dir);
    const segment = path.join(dir, "wal-0000000000000001.seg");
    const archive = path.join(dir, "archive");
    fs.writeFileSync(segment, "first life");
    await archiveSegment(archive, segment);
    await archiveSegment(archive, segment); // archived again after a crash: nothing new
    fs.writeFileSync(segment, "after a restore, the same seq again");
    await archiveSegment(archive, segment);
    expect(fs.readdirSync(archive).sort()).toEqual([
      "wal-0000000000000001.1.seg",
      "wal-0000000000000001.seg",
    ]);
    expect(fs.readFileSync(path.join(archive, "wal-0000000000000001.seg"), "utf8")).toBe(
      "first life",
    );
  });
});
