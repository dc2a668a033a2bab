// Typed surface of the C++ WAL addon (native/*.cc, built by binding.gyp into
// build/Release/stemedb_wal.node). Everything that touches the disk for the WAL goes through
// here: aligned buffers, O_DIRECT/O_DSYNC files, pwrite + fdatasync off the JS thread, CRC32C.
//
// Contract notes (see DESIGN.md §2):
// - A failed fdatasync is reported, never retried: the caller must treat the segment as
//   broken (fsyncgate), not try again.
// - `errno` on WalNativeError is the positive POSIX errno (0 for codes that are not OS errors:
//   EALIGN, SHORT_WRITE, ENOMEM from the allocator).
// - close() refuses (code EBUSY) while a writeAndSync/zeroFill on that descriptor is in flight,
//   and sets `h.fd = -1`, so later use of the handle fails with EBADF instead of touching a
//   reused descriptor number.
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const WAL_BLOCK_SIZE_BYTES = 4096;

export class WalNativeError extends Error {
  /** errno name ("EIO", "ENOSPC", "EBADF", ...) or "EALIGN", "SHORT_WRITE", "EBUSY". */
  readonly code: string;
  /** Positive POSIX errno, 0 when the failure is not an OS error. */
  readonly errno: number;
  readonly syscall: string;
  readonly path: string;

  constructor(message: string, code: string, errno: number, syscall: string, filePath: string) {
    super(message);
    this.name = "WalNativeError";
    this.code = code;
    this.errno = errno;
    this.syscall = syscall;
    this.path = filePath;
  }
}

export interface WalFileHandle {
  fd: number;
  path: string;
  direct: boolean;
  dsync: boolean;
}

export interface WalWriteResult {
  bytesWritten: number;
  /** pwrite duration (CLOCK_MONOTONIC). */
  writeNs: number;
  /** fdatasync duration; for dsync handles the whole pwrite duration (= writeNs). */
  syncNs: number;
}

export interface NativeWal {
  /** 4096-aligned, zero-filled memory as a Node Buffer (external, freed by a finalizer). sizeBytes must be a positive multiple of 4096, at most 256 MiB. */
  allocAligned(sizeBytes: number): Buffer;
  /** Opens (optionally creating, mode 0644) a file. If direct is requested and the filesystem refuses O_DIRECT (EINVAL), reopen without O_DIRECT and report direct:false. dsync adds O_DSYNC. Synchronous; throws WalNativeError. */
  openFile(path: string, opts: { create: boolean; direct: boolean; dsync: boolean }): WalFileHandle;
  /** On a libuv worker thread: pwrite exactly `length` bytes (1 B..1 GiB) from buf[bufOffset..] at fileOffset, then fdatasync unless the handle is dsync. Direct handles: address+bufOffset, length and fileOffset 4096-aligned, else throws EALIGN synchronously. A failed fdatasync is reported (syscall "fdatasync"), never retried. */
  writeAndSync(
    h: WalFileHandle,
    buf: Buffer,
    bufOffset: number,
    length: number,
    fileOffset: number,
    cb: (err: WalNativeError | null, result: WalWriteResult | null) => void,
  ): void;
  /** writeAndSync on the calling thread: returns the result or throws WalNativeError. */
  writeAndSyncBlocking(
    h: WalFileHandle,
    buf: Buffer,
    bufOffset: number,
    length: number,
    fileOffset: number,
  ): WalWriteResult;
  /** On a worker thread: writes zeros over [fileOffset, fileOffset+length) (length 1 B..16 GiB) in chunks of at most 1 MiB, then fdatasync. Used to preallocate WAL segments. */
  zeroFill(
    h: WalFileHandle,
    fileOffset: number,
    length: number,
    cb: (err: WalNativeError | null) => void,
  ): void;
  /** Synchronous pread into buf (for recovery); returns bytes read (may be < length at EOF). Direct handles: alignment rules as for writeAndSync. */
  readSync(
    h: WalFileHandle,
    buf: Buffer,
    bufOffset: number,
    length: number,
    fileOffset: number,
  ): number;
  /** fsync of a directory (after creating/renaming/deleting files in it). Synchronous. */
  fsyncDir(dirPath: string): void;
  /** fdatasync a handle synchronously (checkpoints/manifests; never retry on failure). */
  fdatasyncSync(h: WalFileHandle): void;
  /** Closes the descriptor and sets h.fd = -1. Throws EBUSY while async work on it is in flight. */
  close(h: WalFileHandle): void;
  /** CRC32C (Castagnoli) of buf[offset, offset+length), continuing from `seed` (default 0) like the standard incremental form. Synchronous. */
  crc32c(buf: Uint8Array, offset: number, length: number, seed?: number): number;
  /** Which CRC implementation runs: "sse4.2" or "software". */
  crc32cImpl(): string;
  /** Benchmark floor, entirely in C, synchronous (blocks the event loop). Creates `path`, O_DIRECT unless direct=false (no buffered fallback: EINVAL is thrown), O_DSYNC if dsync; zero-fills iterations*blockBytes and fdatasyncs, then times `iterations` aligned pwrite(+fdatasync) calls. Returns per-iteration latencies in ns. Leaves the file for the caller to remove. Bounds: iterations 1..1e6, blockBytes 4096..16 MiB (multiple of 4096), total <= 4 GiB. */
  rawSyncLoop(
    path: string,
    opts: { iterations: number; blockBytes: number; direct: boolean; dsync: boolean },
  ): Float64Array;
}

interface AddonExports extends NativeWal {
  crc32cSoftware(buf: Uint8Array, offset: number, length: number, seed?: number): number;
  bufferAddressModulo(buf: Uint8Array, modulus: number): number;
  setErrorClass(ctor: typeof WalNativeError): void;
  blockSizeBytes: number;
}

const ADDON_RELATIVE_PATH = path.join("build", "Release", "stemedb_wal.node");
const MAX_DIR_LEVELS = 32;

/** The nearest ancestor of this module's directory holding package.json (the project root). */
function findPackageRoot(startDir: string): string {
  let dir = startDir;
  for (let level = 0; level < MAX_DIR_LEVELS; level++) {
    if (fs.existsSync(path.join(dir, "package.json"))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  throw new Error(`stemedb_wal: no package.json above ${startDir}`);
}

function loadAddon(): AddonExports {
  const root = findPackageRoot(path.dirname(fileURLToPath(import.meta.url)));
  const addonPath = path.join(root, ADDON_RELATIVE_PATH);
  if (!fs.existsSync(addonPath)) {
    throw new Error(
      `stemedb_wal: ${addonPath} is missing; build it with \`npm install\` or \`npm run install\``,
    );
  }
  const require = createRequire(import.meta.url);
  const addon = require(addonPath) as AddonExports;
  if (addon.blockSizeBytes !== WAL_BLOCK_SIZE_BYTES) {
    throw new Error(
      `stemedb_wal: addon block size ${addon.blockSizeBytes} != ${WAL_BLOCK_SIZE_BYTES}`,
    );
  }
  // Once per thread: each worker thread gets its own addon environment.
  addon.setErrorClass(WalNativeError);
  return addon;
}

const addon = loadAddon();

// Direct references to the C++ functions: no JS wrapper (and no allocation) per call.
export const nativeWal: NativeWal = Object.freeze({
  allocAligned: addon.allocAligned,
  openFile: addon.openFile,
  writeAndSync: addon.writeAndSync,
  writeAndSyncBlocking: addon.writeAndSyncBlocking,
  zeroFill: addon.zeroFill,
  readSync: addon.readSync,
  fsyncDir: addon.fsyncDir,
  fdatasyncSync: addon.fdatasyncSync,
  close: addon.close,
  crc32c: addon.crc32c,
  crc32cImpl: addon.crc32cImpl,
  rawSyncLoop: addon.rawSyncLoop,
});

/** Test hook: the table-driven CRC32C, to compare with the hardware path. */
export const _crc32cSoftware: (
  buf: Uint8Array,
  offset: number,
  length: number,
  seed?: number,
) => number = addon.crc32cSoftware;

/** Test hook: the address of buf's first byte modulo `modulus` (alignment checks). */
export const _bufferAddressModulo: (buf: Uint8Array, modulus: number) => number =
  addon.bufferAddressModulo;
