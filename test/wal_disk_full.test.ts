import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WalUnavailableError } from "../src/wal/errors.js";
import { mountSmallDisk, type SmallDisk } from "./helpers/small_disk.js";
import { openCollecting, payloadOf } from "./helpers/wal_fixtures.js";

// A real size-limited filesystem: a 3 MiB tmpfs mounted by the test (needs root).
let disk: SmallDisk;

beforeAll(() => {
  disk = mountSmallDisk("stemedb-full-", "3m");
});

afterAll(() => disk.remove());

describe("wal on a full disk", () => {
  it("fails appends with disk_full, keeps acknowledged records, and resumes once space is freed", async (ctx) => {
    if (disk.skipReason !== null) ctx.skip();
    const walDir = path.join(disk.dir, "wal");
    const { wal } = await openCollecting(walDir, { retryDelayMs: 20 });
    const record = Buffer.alloc(30_000, 3);
    let acked = 0;
    acked = wal.append(1, record);
    await wal.durable(acked);
    // Fill the rest of the filesystem so that no further segment can be preallocated.
    // Let the spare that the first rotation started finish, then fill what is left.
    await new Promise((resolve) => setTimeout(resolve, 200));
    const filler = path.join(disk.dir, "filler");
    const fd = fs.openSync(filler, "w");
    const chunk = Buffer.alloc(16 * 1024);
    try {
      for (;;) fs.writeSync(fd, chunk);
    } catch (err) {
      expect((err as NodeJS.ErrnoException).code).toBe("ENOSPC");
    } finally {
      fs.closeSync(fd);
    }

    let failure: unknown = null;
    for (let i = 0; i < 200 && failure === null; i++) {
      try {
        const lsn = wal.append(1, record);
        await wal.durable(lsn);
        acked = lsn;
      } catch (err) {
        failure = err;
      }
    }
    expect(failure).toBeInstanceOf(WalUnavailableError);
    expect((failure as WalUnavailableError).reason).toBe("disk_full");
    expect(() => wal.append(1, payloadOf("refused"))).toThrow(WalUnavailableError);

    fs.unlinkSync(filler);
    let resumed = false;
    for (let attempt = 0; attempt < 200 && !resumed; attempt++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      if (wal.unavailable === null) resumed = true;
    }
    expect(resumed).toBe(true);
    const after = wal.append(1, payloadOf("after-space-freed"));
    await wal.durable(after);
    await wal.close();

    const { wal: reopened, replayed } = await openCollecting(walDir);
    expect(replayed.length).toBe(after);
    expect(replayed.map((r) => r.lsn)).toEqual(Array.from({ length: after }, (_, i) => i + 1));
    expect(after).toBe(acked + 1);
    expect(replayed.at(-1)?.payload).toBe("after-space-freed");
    await reopened.close();
  });
});
