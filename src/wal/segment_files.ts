// Segment files on disk: spares (pre-written with zeros, or recycled segments) and their
// activation as the next live segment. Every create/rename/delete is followed by an fsync
// of the directory (ALICE: renames are not durable until the directory is).
import fs from "node:fs";
import path from "node:path";
import {
  BLOCK_SIZE_BYTES,
  SEGMENT_FLAG_RECYCLED,
  segmentFileName,
  writeSegmentHeader,
} from "./format.js";
import { nativeWal, type WalFileHandle, type WalNativeError } from "./native.js";

const SPARE_NAME = /^spare-([zr])-(\d+)\.wal$/;
const TEMP_SUFFIX = ".tmp";

export interface Spare {
  path: string;
  recycled: boolean;
}

export interface SyncMode {
  direct: boolean;
  dsync: boolean;
}

export function removeLeftoverTemps(dir: string): void {
  let removed = false;
  for (const name of fs.readdirSync(dir)) {
    if (name.endsWith(TEMP_SUFFIX)) {
      fs.unlinkSync(path.join(dir, name));
      removed = true;
    }
  }
  if (removed) nativeWal.fsyncDir(dir);
}

/** Ready spares of the right size; others (a size change, a damaged file) are deleted. */
export function listSpares(dir: string, segmentSizeBytes: number): Spare[] {
  const spares: Spare[] = [];
  let removed = false;
  for (const name of fs.readdirSync(dir)) {
    const match = SPARE_NAME.exec(name);
    if (match === null) continue;
    const filePath = path.join(dir, name);
    if (fs.statSync(filePath).size !== segmentSizeBytes) {
      fs.unlinkSync(filePath);
      removed = true;
      continue;
    }
    spares.push({ path: filePath, recycled: match[1] === "r" });
  }
  if (removed) nativeWal.fsyncDir(dir);
  return spares;
}

let spareCounter = 0;
function spareName(recycled: boolean): string {
  spareCounter = (spareCounter + 1) % 1_000_000_000;
  return `spare-${recycled ? "r" : "z"}-${Date.now()}${spareCounter}.wal`;
}

/** Writes a whole zero-filled spare (temp name, zero-fill + sync, rename, fsync dir). */
export function createZeroSpare(
  dir: string,
  segmentSizeBytes: number,
  mode: SyncMode,
  done: (err: WalNativeError | Error | null, spare: Spare | null) => void,
): void {
  const finalPath = path.join(dir, spareName(false));
  const tempPath = finalPath + TEMP_SUFFIX;
  let handle: WalFileHandle;
  try {
    handle = nativeWal.openFile(tempPath, { create: true, direct: mode.direct, dsync: false });
  } catch (err) {
    done(err as Error, null);
    return;
  }
  nativeWal.zeroFill(handle, 0, segmentSizeBytes, (err) => {
    nativeWal.close(handle);
    if (err !== null) {
      fs.rmSync(tempPath, { force: true });
      done(err, null);
      return;
    }
    try {
      fs.renameSync(tempPath, finalPath);
      nativeWal.fsyncDir(dir);
    } catch (renameErr) {
      done(renameErr as Error, null);
      return;
    }
    done(null, { path: finalPath, recycled: false });
  });
}

/** Whether two files hold the same bytes (read in 1 MiB chunks). */
async function sameContent(a: string, b: string): Promise<boolean> {
  const [sa, sb] = await Promise.all([fs.promises.stat(a), fs.promises.stat(b)]);
  if (sa.size !== sb.size) return false;
  const [fa, fb] = await Promise.all([fs.promises.open(a, "r"), fs.promises.open(b, "r")]);
  try {
    const ba = Buffer.alloc(1 << 20);
    const bb = Buffer.alloc(1 << 20);
    for (let at = 0; at < sa.size; at += ba.length) {
      const [ra, rb] = await Promise.all([
        fa.read(ba, 0, ba.length, at),
        fb.read(bb, 0, bb.length, at),
      ]);
      if (ra.bytesRead !== rb.bytesRead) return false;
      if (!ba.subarray(0, ra.bytesRead).equals(bb.subarray(0, rb.bytesRead))) return false;
    }
    return true;
  } finally {
    await Promise.all([fa.close(), fb.close()]);
  }
}

/** Suffixed names tried for an archived segment whose name is taken, at most. */
const MAX_ARCHIVE_NAME_TRIES = 1000;

/**
 * Copies a released segment into the archive directory: temp name, fsync, rename, fsync dir.
 * An archived segment is never replaced: a server restored from a backup reuses seqs, so a
 * taken `wal-<seq>.seg` makes this copy `wal-<seq>.<n>.seg` (rename it back to replay it).
 */
export async function archiveSegment(archiveDir: string, segmentPath: string): Promise<void> {
  await fs.promises.mkdir(archiveDir, { recursive: true });
  const base = path.basename(segmentPath);
  let target = path.join(archiveDir, base);
  for (let n = 1; fs.existsSync(target); n++) {
    // Archived before and not yet recycled (a crash, a retry): the copy is already there.
    if (await sameContent(target, segmentPath)) return;
    if (n > MAX_ARCHIVE_NAME_TRIES)
      throw new Error(
        `archive ${archiveDir} already holds ${MAX_ARCHIVE_NAME_TRIES} copies of ${base}`,
      );
    target = path.join(archiveDir, base.replace(/\.seg$/, `.${n}.seg`));
  }
  const temp = target + TEMP_SUFFIX;
  await fs.promises.copyFile(segmentPath, temp);
  const handle = await fs.promises.open(temp, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
  await fs.promises.rename(temp, target);
  nativeWal.fsyncDir(archiveDir);
}

/** Turns a released segment into a spare (its stale records stay; LSN order rejects them). */
export function recycleSegment(dir: string, segmentPath: string): Spare {
  const target = path.join(dir, spareName(true));
  fs.renameSync(segmentPath, target);
  nativeWal.fsyncDir(dir);
  return { path: target, recycled: true };
}

export interface LiveSegment {
  seq: number;
  path: string;
  handle: WalFileHandle;
  firstLsn: number;
  lastLsn: number;
  writeOffsetBytes: number;
  sizeBytes: number;
}

/** The last segment, reopened to append where recovery found its records end. */
export function reopenTail(
  info: { seq: number; path: string; firstLsn: number; lastLsn: number; sizeBytes: number },
  writeOffsetBytes: number,
  direct: boolean,
  dsync: boolean,
): LiveSegment {
  const handle = nativeWal.openFile(info.path, { create: false, direct, dsync });
  return {
    seq: info.seq,
    path: info.path,
    handle,
    firstLsn: info.firstLsn,
    lastLsn: info.lastLsn,
    writeOffsetBytes,
    sizeBytes: info.sizeBytes,
  };
}

/**
 * Closes a segment the log no longer writes to (rotated away, or abandoned after a failure).
 * Its acknowledged records were synced before; Linux releases the descriptor even when
 * close reports an error, so an error here changes nothing and must not escape a callback.
 */
export function closeRetiredSegment(handle: WalFileHandle): void {
  try {
    nativeWal.close(handle);
  } catch {
    // See above: nothing to undo, nothing lost.
  }
}

/** Writes the header into a spare, syncs it, and renames it to the next segment's name. */
export function activateSpare(
  dir: string,
  spare: Spare,
  header: { shardId: number; seq: number; firstLsn: number; segmentSizeBytes: number },
  headerBuf: Buffer,
  mode: SyncMode,
  done: (err: WalNativeError | Error | null, segment: LiveSegment | null) => void,
): void {
  let handle: WalFileHandle;
  try {
    handle = nativeWal.openFile(spare.path, {
      create: false,
      direct: mode.direct,
      dsync: mode.dsync,
    });
  } catch (err) {
    done(err as Error, null);
    return;
  }
  writeSegmentHeader(headerBuf, {
    ...header,
    createdAtMs: Date.now(),
    flags: spare.recycled ? SEGMENT_FLAG_RECYCLED : 0,
  });
  nativeWal.writeAndSync(handle, headerBuf, 0, BLOCK_SIZE_BYTES, 0, (err) => {
    if (err !== null) {
      nativeWal.close(handle);
      done(err, null);
      return;
    }
    const finalPath = path.join(dir, segmentFileName(header.seq));
    try {
      fs.renameSync(spare.path, finalPath);
      nativeWal.fsyncDir(dir);
    } catch (renameErr) {
      nativeWal.close(handle);
      done(renameErr as Error, null);
      return;
    }
    done(null, {
      seq: header.seq,
      path: finalPath,
      handle,
      firstLsn: header.firstLsn,
      lastLsn: header.firstLsn - 1,
      writeOffsetBytes: BLOCK_SIZE_BYTES,
      sizeBytes: header.segmentSizeBytes,
    });
  });
}
