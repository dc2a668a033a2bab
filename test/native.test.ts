import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  _bufferAddressModulo,
  _crc32cSoftware,
  nativeWal,
  WAL_BLOCK_SIZE_BYTES,
  type WalFileHandle,
  WalNativeError,
  type WalWriteResult,
} from "../src/wal/native.js";

const BLOCK = WAL_BLOCK_SIZE_BYTES;

function writeAndSync(
  h: WalFileHandle,
  buf: Buffer,
  bufOffset: number,
  length: number,
  fileOffset: number,
): Promise<WalWriteResult> {
  return new Promise((resolve, reject) => {
    nativeWal.writeAndSync(h, buf, bufOffset, length, fileOffset, (err, result) => {
      if (err) reject(err);
      else if (result) resolve(result);
      else reject(new Error("no result"));
    });
  });
}

function zeroFill(h: WalFileHandle, fileOffset: number, length: number): Promise<void> {
  return new Promise((resolve, reject) => {
    nativeWal.zeroFill(h, fileOffset, length, (err) => (err ? reject(err) : resolve()));
  });
}

function catchError(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error("expected a throw");
}

let dir = "";
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "stemedb-"));
});
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

describe("crc32c", () => {
  const check = Buffer.from("123456789", "ascii");

  it("gives the standard check value in both implementations", () => {
    expect(nativeWal.crc32c(check, 0, check.length)).toBe(0xe3069283);
    expect(_crc32cSoftware(check, 0, check.length)).toBe(0xe3069283);
    expect(["sse4.2", "software"]).toContain(nativeWal.crc32cImpl());
    console.log(`crc32cImpl on this CPU: ${nativeWal.crc32cImpl()}`);
  });

  it("is incremental and agrees with the software path on odd offsets and lengths", () => {
    const data = Buffer.alloc(10_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 131 + 7) & 0xff;
    for (const [off, len] of [
      [0, 0],
      [1, 1],
      [3, 17],
      [5, 4096],
      [7, 9993],
    ] as const) {
      const hw = nativeWal.crc32c(data, off, len);
      expect(_crc32cSoftware(data, off, len)).toBe(hw);
      const mid = Math.floor(len / 3);
      const a = nativeWal.crc32c(data, off, mid);
      expect(nativeWal.crc32c(data, off + mid, len - mid, a)).toBe(hw);
      expect(_crc32cSoftware(data, off + mid, len - mid, a)).toBe(hw);
    }
  });

  it("validates its arguments", () => {
    expect(() => nativeWal.crc32c(check, 5, 5)).toThrow(RangeError);
    expect(() => nativeWal.crc32c(check, -1, 1)).toThrow(RangeError);
    expect(() => nativeWal.crc32c(check, 0, 1, 2 ** 32)).toThrow(RangeError);
    expect(() => nativeWal.crc32c("abc" as unknown as Uint8Array, 0, 1)).toThrow(TypeError);
  });
});

describe("allocAligned", () => {
  it("returns zeroed 4096-aligned memory", () => {
    const buf = nativeWal.allocAligned(3 * BLOCK);
    expect(buf.length).toBe(3 * BLOCK);
    expect(_bufferAddressModulo(buf, BLOCK)).toBe(0);
    expect(buf.every((b) => b === 0)).toBe(true);
  });

  it("rejects bad sizes", () => {
    expect(() => nativeWal.allocAligned(0)).toThrow(RangeError);
    expect(() => nativeWal.allocAligned(100)).toThrow(RangeError);
    expect(() => nativeWal.allocAligned(257 * 1024 * 1024)).toThrow(RangeError);
    expect(() => nativeWal.allocAligned(1.5)).toThrow(RangeError);
    expect(() => nativeWal.allocAligned("4096" as unknown as number)).toThrow(TypeError);
  });
});

describe("files", () => {
  it("writes, syncs and reads back through readSync and fs", async () => {
    const file = path.join(dir, "wal-1.seg");
    const h = nativeWal.openFile(file, { create: true, direct: true, dsync: false });
    expect(h.path).toBe(file);
    expect(h.direct).toBe(true);
    nativeWal.fsyncDir(dir);
    const buf = nativeWal.allocAligned(2 * BLOCK);
    buf.fill(0x5a, 0, BLOCK);
    buf.fill(0x3c, BLOCK);
    const res = await writeAndSync(h, buf, 0, 2 * BLOCK, 0);
    expect(res.bytesWritten).toBe(2 * BLOCK);
    expect(res.writeNs).toBeGreaterThan(0);
    expect(res.syncNs).toBeGreaterThan(0);

    const back = nativeWal.allocAligned(4 * BLOCK);
    expect(nativeWal.readSync(h, back, 0, 4 * BLOCK, 0)).toBe(2 * BLOCK); // short at EOF
    expect(back.subarray(0, 2 * BLOCK).equals(buf)).toBe(true);
    expect(fs.readFileSync(file).equals(buf)).toBe(true);
    nativeWal.fdatasyncSync(h);
    nativeWal.close(h);
    expect(h.fd).toBe(-1);
  });

  it("writes and syncs on the calling thread with the same result and checks", () => {
    const file = path.join(dir, "wal-inline.seg");
    const h = nativeWal.openFile(file, { create: true, direct: true, dsync: false });
    const buf = nativeWal.allocAligned(2 * BLOCK);
    buf.fill(0x7e);
    const res = nativeWal.writeAndSyncBlocking(h, buf, 0, 2 * BLOCK, BLOCK);
    expect(res.bytesWritten).toBe(2 * BLOCK);
    expect(res.writeNs).toBeGreaterThan(0);
    expect(res.syncNs).toBeGreaterThan(0);
    expect(fs.readFileSync(file).subarray(BLOCK).equals(buf)).toBe(true);
    const misaligned = catchError(() => nativeWal.writeAndSyncBlocking(h, buf, 0, 100, 0));
    expect((misaligned as WalNativeError).code).toBe("EALIGN");
    nativeWal.close(h);
    const closed = catchError(() => nativeWal.writeAndSyncBlocking(h, buf, 0, BLOCK, 0));
    expect(closed).toBeInstanceOf(WalNativeError);
    expect((closed as WalNativeError).code).toBe("EBADF");
    expect((closed as WalNativeError).syscall).toBe("pwrite");
    expect((closed as WalNativeError).path).toBe(file);
  });

  it("zero-fills, then writes at an offset (dsync handle)", async () => {
    const file = path.join(dir, "wal-2.seg");
    const h = nativeWal.openFile(file, { create: true, direct: true, dsync: true });
    const size = 3 * 1024 * 1024 + 2 * BLOCK; // several 1 MiB chunks plus a remainder
    await zeroFill(h, 0, size);
    expect(fs.statSync(file).size).toBe(size);
    const buf = nativeWal.allocAligned(BLOCK);
    buf.fill(0xee);
    const res = await writeAndSync(h, buf, 0, BLOCK, 5 * BLOCK);
    expect(res.syncNs).toBe(res.writeNs);
    const content = fs.readFileSync(file);
    expect(content.length).toBe(size);
    expect(content.subarray(5 * BLOCK, 6 * BLOCK).every((b) => b === 0xee)).toBe(true);
    expect(content.subarray(0, 5 * BLOCK).every((b) => b === 0)).toBe(true);
    expect(content.subarray(6 * BLOCK).every((b) => b === 0)).toBe(true);
    nativeWal.close(h);
  });

  it("buffered handles accept unaligned writes from ordinary Buffers", async () => {
    const file = path.join(dir, "buffered.dat");
    const h = nativeWal.openFile(file, { create: true, direct: false, dsync: false });
    const buf = Buffer.from("xxhello walxx");
    await writeAndSync(h, buf, 2, 9, 3);
    const out = Buffer.alloc(9);
    expect(nativeWal.readSync(h, out, 0, 9, 3)).toBe(9);
    expect(out.toString()).toBe("hello wal");
    nativeWal.close(h);
  });

  it("throws EALIGN synchronously for misaligned direct I/O", () => {
    const h = nativeWal.openFile(path.join(dir, "align.seg"), {
      create: true,
      direct: true,
      dsync: false,
    });
    const buf = nativeWal.allocAligned(2 * BLOCK);
    const noop = () => {};
    for (const [off, len, fileOff] of [
      [1, BLOCK, 0],
      [0, 100, 0],
      [0, BLOCK, 512],
    ] as const) {
      const e = catchError(() => nativeWal.writeAndSync(h, buf, off, len, fileOff, noop));
      expect(e).toBeInstanceOf(WalNativeError);
      expect((e as WalNativeError).code).toBe("EALIGN");
      expect((e as WalNativeError).path).toBe(h.path);
    }
    expect(() => nativeWal.readSync(h, buf, 0, 10, 0)).toThrow(WalNativeError);
    expect(() => nativeWal.zeroFill(h, 100, BLOCK, noop)).toThrow(WalNativeError);
    nativeWal.close(h);
  });

  it("validates arguments without crashing", () => {
    const h = nativeWal.openFile(path.join(dir, "args.seg"), {
      create: true,
      direct: false,
      dsync: false,
    });
    const buf = Buffer.alloc(16);
    const noop = () => {};
    expect(() => nativeWal.writeAndSync(h, buf, 8, 16, 0, noop)).toThrow(RangeError);
    expect(() => nativeWal.writeAndSync(h, buf, 0, 0, 0, noop)).toThrow(RangeError);
    expect(() => nativeWal.writeAndSync(h, buf, 0, 4, -1, noop)).toThrow(RangeError);
    expect(() => nativeWal.writeAndSync(h, buf, 0, 4, 0, null as never)).toThrow(TypeError);
    expect(() => nativeWal.readSync(h, buf, 0, 17, 0)).toThrow(RangeError);
    expect(() => nativeWal.readSync({} as WalFileHandle, buf, 0, 1, 0)).toThrow(TypeError);
    expect(() =>
      nativeWal.openFile(path.join(dir, "x"), { create: true } as unknown as {
        create: boolean;
        direct: boolean;
        dsync: boolean;
      }),
    ).toThrow(TypeError);
    expect(() => nativeWal.openFile("", { create: true, direct: false, dsync: false })).toThrow(
      TypeError,
    );
    nativeWal.close(h);
  });

  it("reports EBADF for a closed handle and a bogus fd", async () => {
    const h = nativeWal.openFile(path.join(dir, "closed.seg"), {
      create: true,
      direct: false,
      dsync: false,
    });
    nativeWal.close(h);
    const e1 = catchError(() => nativeWal.fdatasyncSync(h));
    expect(e1).toBeInstanceOf(WalNativeError);
    expect((e1 as WalNativeError).code).toBe("EBADF");
    expect((e1 as WalNativeError).syscall).toBe("fdatasync");
    expect((e1 as WalNativeError).path).toBe(h.path);
    expect((e1 as WalNativeError).errno).toBe(os.constants.errno.EBADF);

    const e2 = await writeAndSync(h, Buffer.alloc(8), 0, 8, 0).catch((e: unknown) => e);
    expect(e2).toBeInstanceOf(WalNativeError);
    expect((e2 as WalNativeError).code).toBe("EBADF");
    expect((e2 as WalNativeError).syscall).toBe("pwrite");

    const bogus: WalFileHandle = { fd: 1_000_000, path: "/bogus", direct: false, dsync: false };
    const e3 = catchError(() => nativeWal.readSync(bogus, Buffer.alloc(8), 0, 8, 0));
    expect((e3 as WalNativeError).code).toBe("EBADF");
    expect((e3 as WalNativeError).path).toBe("/bogus");
    expect(() => nativeWal.close(h)).toThrow(WalNativeError);
  });

  it("refuses to close a handle with a write in flight", async () => {
    const h = nativeWal.openFile(path.join(dir, "busy.seg"), {
      create: true,
      direct: false,
      dsync: false,
    });
    const p = writeAndSync(h, Buffer.alloc(BLOCK, 1), 0, BLOCK, 0);
    const e = catchError(() => nativeWal.close(h));
    expect((e as WalNativeError).code).toBe("EBUSY");
    await p;
    nativeWal.close(h);
  });

  it("gives ENOENT with the path for a missing directory", () => {
    const missing = path.join(dir, "no-such-dir", "wal.seg");
    const e = catchError(() =>
      nativeWal.openFile(missing, { create: true, direct: true, dsync: false }),
    );
    expect(e).toBeInstanceOf(WalNativeError);
    const err = e as WalNativeError;
    expect(err.code).toBe("ENOENT");
    expect(err.syscall).toBe("open");
    expect(err.path).toBe(missing);
    expect(err.message).toContain(missing);
    const e2 = catchError(() => nativeWal.fsyncDir(path.join(dir, "no-such-dir")));
    expect((e2 as WalNativeError).code).toBe("ENOENT");
  });

  it("falls back to buffered I/O where O_DIRECT is refused (/dev/shm)", async (ctx) => {
    if (!fs.existsSync("/dev/shm")) {
      console.log("skip: /dev/shm does not exist");
      ctx.skip();
      return;
    }
    const shmDir = fs.mkdtempSync(path.join("/dev/shm", "stemedb-"));
    try {
      const file = path.join(shmDir, "wal.seg");
      const h = nativeWal.openFile(file, { create: true, direct: true, dsync: false });
      if (h.direct) {
        nativeWal.close(h);
        console.log("skip: /dev/shm accepts O_DIRECT on this kernel (tmpfs supports it since 6.6)");
        ctx.skip();
        return;
      }
      const buf = Buffer.from("unaligned is fine when buffered");
      await writeAndSync(h, buf, 0, buf.length, 3);
      expect(fs.readFileSync(file).subarray(3).equals(buf)).toBe(true);
      nativeWal.close(h);
    } finally {
      fs.rmSync(shmDir, { recursive: true, force: true });
    }
  });
});

describe("rawSyncLoop", () => {
  it("returns one positive latency per iteration", () => {
    const file = path.join(dir, "raw.bench");
    const lat = nativeWal.rawSyncLoop(file, {
      iterations: 20,
      blockBytes: BLOCK,
      direct: true,
      dsync: false,
    });
    expect(lat).toBeInstanceOf(Float64Array);
    expect(lat.length).toBe(20);
    for (const v of lat) expect(v).toBeGreaterThan(0);
    expect(fs.statSync(file).size).toBe(20 * BLOCK);
    expect(() =>
      nativeWal.rawSyncLoop(file, { iterations: 0, blockBytes: BLOCK, direct: true, dsync: false }),
    ).toThrow(RangeError);
  });
});
