import fs from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { WalCorruptionError, WalUnavailableError } from "../src/wal/errors.js";
import { BLOCK_SIZE_BYTES, parseSegmentFileName, RECORD_HEADER_BYTES } from "../src/wal/format.js";
import { nativeWal, type WalFileHandle } from "../src/wal/native.js";
import { openCollecting, payloadOf, SMALL_SEGMENT_BYTES, tempDir } from "./helpers/wal_fixtures.js";

const dirs: string[] = [];
function newDir(): string {
  const dir = tempDir();
  dirs.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function segmentPaths(dir: string): string[] {
  return fs
    .readdirSync(dir)
    .filter((n) => parseSegmentFileName(n) !== null)
    .sort()
    .map((n) => path.join(dir, n));
}

describe.each(["pool", "inline"] as const)("wal, %s flush", (flushMode) => {
  it("appends, acknowledges after sync, and replays the same records after restart", async () => {
    const dir = newDir();
    const { wal } = await openCollecting(dir, { flushMode });
    const lsns: number[] = [];
    for (let i = 0; i < 100; i++) lsns.push(wal.append(1, payloadOf(`record-${i}`)));
    expect(lsns).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    await wal.durable(100);
    expect(wal.durableLsn).toBe(100);
    await wal.close();

    const reopened = await openCollecting(dir, { flushMode });
    expect(reopened.replayed.map((r) => r.lsn)).toEqual(lsns);
    expect(reopened.replayed.map((r) => r.payload)).toEqual(lsns.map((l) => `record-${l - 1}`));
    expect(reopened.wal.nextLsn).toBe(101);
    expect(reopened.wal.recovery.tornTailTruncations).toBe(0);
    reopened.wal.append(1, payloadOf("after-restart"));
    await reopened.wal.durable(101);
    await reopened.wal.close();
    const third = await openCollecting(dir, { flushMode });
    expect(third.replayed.length).toBe(101);
    expect(third.replayed[100]?.payload).toBe("after-restart");
    await third.wal.close();
  });

  it("groups concurrent appends into few syncs and keeps LSNs gap-free", async () => {
    const dir = newDir();
    let flushes = 0;
    let flushedRecords = 0;
    const { wal } = await openCollecting(dir, {
      flushMode,
      observer: {
        onFlush: (records) => {
          flushes++;
          flushedRecords += records;
        },
        onError: () => {},
        onRotate: () => {},
        onSegments: () => {},
      },
    });
    const waits: Promise<void>[] = [];
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < 256; i++)
        waits.push(wal.durable(wal.append(1, payloadOf(`r${round}-${i}`))));
      await new Promise((resolve) => setImmediate(resolve));
    }
    await Promise.all(waits);
    expect(flushedRecords).toBe(5120);
    expect(flushes).toBeLessThan(5120 / 16);
    await wal.close();
    const { wal: again, replayed } = await openCollecting(dir, { flushMode });
    expect(replayed.map((r) => r.lsn)).toEqual(Array.from({ length: 5120 }, (_, i) => i + 1));
    expect(replayed.length).toBe(5120);
    await again.close();
  });

  it("fails the batch and refuses appends when the write fails, keeping what was acknowledged", async () => {
    const dir = newDir();
    const { wal } = await openCollecting(dir, { flushMode, retryDelayMs: 60_000 });
    await wal.durable(wal.append(1, payloadOf("kept")));
    // Pull the segment's descriptor away: the next pwrite fails with EBADF, as a dying disk would.
    const tail = (wal as unknown as { tail: { handle: WalFileHandle } }).tail;
    nativeWal.close(tail.handle);
    const failed = await wal.durable(wal.append(1, payloadOf("lost"))).then(
      () => null,
      (err: unknown) => err,
    );
    expect(failed).toBeInstanceOf(WalUnavailableError);
    expect((failed as WalUnavailableError).reason).toBe("io_error");
    expect(() => wal.append(1, payloadOf("refused"))).toThrow(WalUnavailableError);
    expect(wal.durableLsn).toBe(1);
    await wal.close();
    const reopened = await openCollecting(dir, { flushMode });
    expect(reopened.replayed.map((r) => r.payload)).toEqual(["kept"]);
    await reopened.wal.close();
  });
});

describe("wal", () => {
  it("rotates segments, recycles them behind a checkpoint, and replays only after it", async () => {
    const dir = newDir();
    const { wal } = await openCollecting(dir);
    const big = Buffer.alloc(60_000, 7);
    for (let i = 0; i < 60; i++) {
      wal.append(2, big);
      await wal.durable(i + 1);
    }
    expect(wal.segmentCount).toBeGreaterThan(2);
    const released = await wal.releaseUpTo(40);
    expect(released).toBeGreaterThan(0);
    expect(fs.readdirSync(dir).some((n) => n.startsWith("spare-r-"))).toBe(true);
    await wal.close();

    const { wal: again, replayed } = await openCollecting(dir, { checkpointLsn: 40 });
    expect(replayed.map((r) => r.lsn)).toEqual(Array.from({ length: 20 }, (_, i) => 41 + i));
    // Keep writing into recycled segments: stale records there must never replay.
    for (let i = 0; i < 60; i++) {
      const lsn = again.append(2, big);
      if (i % 8 === 7) await again.durable(lsn);
    }
    await again.durable(120);
    await again.releaseUpTo(110);
    await again.close();
    const { wal: third, replayed: tail } = await openCollecting(dir, { checkpointLsn: 110 });
    expect(tail.map((r) => r.lsn)).toEqual(Array.from({ length: 10 }, (_, i) => 111 + i));
    expect(third.recovery.tornTailTruncations).toBe(0);
    await third.close();
  });

  it("archives segments behind a checkpoint before recycling them, so the chain replays whole", async () => {
    const dir = newDir();
    const archive = newDir();
    const { wal } = await openCollecting(dir, { archiveDir: archive });
    const big = Buffer.alloc(60_000, 9);
    for (let i = 0; i < 60; i++) {
      wal.append(2, big);
      await wal.durable(i + 1);
    }
    expect(await wal.releaseUpTo(40)).toBeGreaterThan(0);
    await wal.close();
    const archived = segmentPaths(archive);
    expect(archived.length).toBeGreaterThan(0);
    // Archived + live segments together are the whole log from LSN 1.
    const chain = newDir();
    for (const file of [...archived, ...segmentPaths(dir)])
      fs.copyFileSync(file, path.join(chain, path.basename(file)));
    const { wal: whole, replayed } = await openCollecting(chain);
    expect(replayed.map((r) => r.lsn)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
    await whole.close();
  });

  it("truncates and counts a torn tail, keeping every earlier record", async () => {
    const dir = newDir();
    const { wal } = await openCollecting(dir);
    for (let i = 0; i < 10; i++) wal.append(1, payloadOf(`first-${i}`));
    await wal.durable(10);
    wal.append(1, payloadOf("x".repeat(3000)));
    wal.append(1, payloadOf("y".repeat(3000)));
    await wal.durable(12);
    await wal.close();
    // Damage the last record of the last batch as a torn write would (its second block).
    const seg = segmentPaths(dir)[0] as string;
    const fd = fs.openSync(seg, "r+");
    fs.writeSync(
      fd,
      Buffer.alloc(BLOCK_SIZE_BYTES, 0xab),
      0,
      BLOCK_SIZE_BYTES,
      3 * BLOCK_SIZE_BYTES,
    );
    fs.closeSync(fd);

    const { wal: again, replayed } = await openCollecting(dir);
    expect(again.recovery.tornTailTruncations).toBe(1);
    expect(replayed.map((r) => r.lsn)).toEqual(Array.from({ length: 11 }, (_, i) => i + 1));
    expect(again.nextLsn).toBe(12);
    again.append(1, payloadOf("rewritten-12"));
    await again.durable(12);
    await again.close();
    const { wal: third, replayed: after } = await openCollecting(dir);
    expect(third.recovery.tornTailTruncations).toBe(0);
    expect(after.map((r) => r.payload).at(-1)).toBe("rewritten-12");
    expect(after.length).toBe(12);
    await third.close();
  });

  it("refuses to open when a bad record is followed by later batches, and repairs on request", async () => {
    const dir = newDir();
    const { wal } = await openCollecting(dir);
    for (let batch = 0; batch < 5; batch++) {
      for (let i = 0; i < 4; i++) wal.append(1, payloadOf(`b${batch}-${i}`));
      await wal.durable(wal.nextLsn - 1);
    }
    await wal.close();
    const seg = segmentPaths(dir)[0] as string;
    // Flip one bit inside the payload of the first record of the second batch.
    const offset = 2 * BLOCK_SIZE_BYTES + RECORD_HEADER_BYTES + 1;
    const bytes = fs.readFileSync(seg);
    bytes[offset] = (bytes[offset] as number) ^ 0x01;
    fs.writeFileSync(seg, bytes);

    const failure = await openCollecting(dir).then(
      () => null,
      (err: unknown) => err,
    );
    expect(failure).toBeInstanceOf(WalCorruptionError);
    const message = (failure as Error).message;
    expect(message).toContain("shard 0");
    expect(message).toContain(seg);
    expect(message).toContain(`byte offset ${2 * BLOCK_SIZE_BYTES}`);

    const { wal: repaired, replayed } = await openCollecting(dir, { repair: true });
    expect(replayed.map((r) => r.lsn)).toEqual([1, 2, 3, 4]);
    expect(repaired.recovery.droppedRecords).toBeGreaterThanOrEqual(3);
    expect(repaired.nextLsn).toBe(5);
    repaired.append(1, payloadOf("after-repair"));
    await repaired.durable(5);
    await repaired.close();
    const { wal: clean, replayed: all } = await openCollecting(dir);
    expect(all.map((r) => r.lsn)).toEqual([1, 2, 3, 4, 5]);
    await clean.close();
  });

  it("refuses to open when a segment in the middle is missing", async () => {
    const dir = newDir();
    const { wal } = await openCollecting(dir);
    const big = Buffer.alloc(200_000, 1);
    for (let i = 0; i < 20; i++) {
      wal.append(2, big);
      await wal.durable(i + 1);
    }
    await wal.close();
    const segs = segmentPaths(dir);
    expect(segs.length).toBeGreaterThanOrEqual(3);
    fs.unlinkSync(segs[1] as string);
    await expect(openCollecting(dir)).rejects.toBeInstanceOf(WalCorruptionError);
  });

  it("rejects payloads above the record bound", async () => {
    const dir = newDir();
    const { wal } = await openCollecting(dir);
    expect(() => wal.append(1, Buffer.alloc(SMALL_SEGMENT_BYTES))).toThrow(RangeError);
    await wal.close();
  });
});
