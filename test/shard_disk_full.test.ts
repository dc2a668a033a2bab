// A shard whose WAL runs out of disk in the middle of a multi-record write: the write is
// answered once with an error (never a throw that kills the shard thread), nothing of it is
// kept or served, and once space is back the same records are written anew.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WRITE_DUPLICATE } from "../src/shard/core_options.js";
import { ShardCore } from "../src/shard/shard_core.js";
import { WalUnavailableError } from "../src/wal/errors.js";
import { bigAssertion } from "./helpers/records.js";
import { mountSmallDisk, type SmallDisk } from "./helpers/small_disk.js";
import { tempDir } from "./helpers/wal_fixtures.js";

// A real size-limited filesystem for the WAL (needs root); LMDB lives on the normal disk.
let disk: SmallDisk;
let dbRoot = "";

beforeAll(() => {
  disk = mountSmallDisk("stemedb-shard-full-", "4m");
  dbRoot = tempDir("stemedb-shard-full-db-");
});

afterAll(() => {
  disk.remove();
  fs.rmSync(dbRoot, { recursive: true, force: true });
});

const SEGMENT_BYTES = 1024 * 1024;
const RECORDS_PER_WRITE = 60; // ≈ 1.2 MiB: more than one WAL batch, so a write flushes mid-way

const idOf = (i: number) => i.toString(16).padStart(32, "0");

/** One write call; resolves with its single answer (a second answer fails the test). */
function write(
  core: ShardCore,
  first: number,
): Promise<{ err: Error | null; flags: number[] | null; lsns: number[] | null }> {
  const records = Array.from({ length: RECORDS_PER_WRITE }, (_, k) =>
    bigAssertion(first + k, "full", 20_000),
  );
  return new Promise((resolve) => {
    let answers = 0;
    core.write(records, (err, outcome) => {
      answers++;
      expect(answers).toBe(1);
      resolve({
        err,
        flags: outcome === null ? null : [...outcome.flags],
        lsns: outcome === null ? null : [...outcome.lsns],
      });
    });
  });
}

describe("a shard on a full disk", () => {
  it("fails a write that runs out of space mid-way as a whole, keeps none of it, and takes it again later", async (ctx) => {
    if (disk.skipReason !== null) ctx.skip();
    const options = {
      shardId: 0,
      walDir: path.join(disk.dir, "wal"),
      dbDir: path.join(dbRoot, "db"),
      segmentSizeBytes: SEGMENT_BYTES,
      // No checkpoint frees a segment until the test asks for one.
      checkpointEveryRecords: 1_000_000_000,
      checkpointIntervalMs: 3_600_000,
    };
    const core = await ShardCore.open(options);
    const acked: number[] = [];
    let failedFirst = -1;
    let failure: Error | null = null;
    for (let first = 1; first < 100 * RECORDS_PER_WRITE; first += RECORDS_PER_WRITE) {
      const { err } = await write(core, first);
      if (err === null) {
        acked.push(first);
        continue;
      }
      // "Retry shortly" while a segment is being switched: what appended before it stays.
      if (err instanceof WalUnavailableError && err.reason === "backpressure") {
        await new Promise((resolve) => setTimeout(resolve, 10));
        continue;
      }
      failedFirst = first;
      failure = err;
      break;
    }
    expect(failure).toBeInstanceOf(WalUnavailableError);
    expect((failure as WalUnavailableError).reason).toBe("disk_full");
    expect(acked.length).toBeGreaterThan(0);
    // The WAL failed inside this write, after part of it was appended: that part is gone.
    const durableAtFailure = core.wal.durableLsn;
    expect(core.wal.nextLsn).toBe(durableAtFailure + 1);
    for (let k = 0; k < RECORDS_PER_WRITE; k++)
      expect(core.getAssertion(idOf(failedFirst + k)), `record ${failedFirst + k}`).toBeUndefined();

    // Space comes back once a checkpoint recycles the segments LMDB has made redundant.
    await core.settled();
    await core.checkpoint();
    let again: Awaited<ReturnType<typeof write>> = {
      err: new Error("not run"),
      flags: null,
      lsns: null,
    };
    for (let attempt = 0; attempt < 200 && again.err !== null; attempt++) {
      again = await write(core, failedFirst);
      if (again.err !== null) await new Promise((resolve) => setTimeout(resolve, 25));
    }
    expect(again.err).toBeNull();
    // Every record of the failed write was written after the failure (a retry that stopped
    // at "rotating" may have written some of them first: those come back as duplicates).
    const lsns = again.lsns as number[];
    for (const lsn of lsns) expect(lsn).toBeGreaterThan(durableAtFailure);
    const retried = await write(core, acked[0] as number);
    expect(retried.flags).toEqual(Array(RECORDS_PER_WRITE).fill(WRITE_DUPLICATE));
    await core.close();

    // After a restart (WAL replay into LMDB) the same records hold the same LSNs.
    const reopened = await ShardCore.open(options);
    for (let k = 0; k < RECORDS_PER_WRITE; k++) {
      expect(reopened.getAssertion(idOf(failedFirst + k))?.lsn).toBe(lsns[k]);
      expect(reopened.getAssertion(idOf((acked[0] as number) + k))?.lsn).toBe(retried.lsns?.[k]);
    }
    await reopened.close();
  });
});
