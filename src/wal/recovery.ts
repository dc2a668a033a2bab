// Recovery: replays records after the store's checkpoint and decides where the log ends.
//
// Rules (see docs/wal.md):
// - A non-last segment must hold exactly the LSNs up to the next segment's first LSN; the
//   next segment's header is authoritative (a batch abandoned after a failed sync is ignored).
// - In the last segment, the first position that is not the expected next record ends the log.
//   If an intact record from a LATER batch follows, an acknowledged batch was damaged:
//   corruption, refuse to open unless repair is requested. If only zeros or stale records
//   follow, the end is clean. Otherwise it is a torn tail: the rest of the segment is zeroed,
//   so no leftover can ever be mistaken for a future record.
import fs from "node:fs";
import path from "node:path";
import { WalCorruptionError } from "./errors.js";
import {
  alignUp,
  BLOCK_SIZE_BYTES,
  isZero,
  type ParsedRecord,
  parseRecord,
  parseSegmentFileName,
  parseSegmentHeader,
  RECORD_HEADER_BYTES,
  SEGMENT_FLAG_RECYCLED,
  type SegmentHeader,
} from "./format.js";

export interface SegmentInfo {
  seq: number;
  path: string;
  firstLsn: number;
  /** Last LSN written into the segment; firstLsn - 1 when it holds none. */
  lastLsn: number;
  sizeBytes: number;
}

export interface RecoveryOptions {
  dir: string;
  shardId: number;
  /** Records with lsn <= checkpointLsn are checked but not replayed. */
  checkpointLsn: number;
  repair: boolean;
  /** Inspect only (verify, dump): never zero a torn tail or delete segments. */
  readOnly?: boolean;
  /** Called in LSN order. `payload` is only valid during the call. */
  onRecord: (kind: number, lsn: number, payload: Buffer) => void;
}

export interface RecoveryResult {
  segments: SegmentInfo[];
  nextLsn: number;
  /** Next aligned write position in the last segment (null when there are no segments). */
  tailWriteOffsetBytes: number | null;
  replayedRecords: number;
  tornTailTruncations: number;
  droppedRecords: number;
}

interface SegmentOnDisk {
  header: SegmentHeader;
  path: string;
  sizeBytes: number;
}

const ZERO_CHUNK_BYTES = 1024 * 1024;

export function listSegments(dir: string, shardId: number): SegmentOnDisk[] {
  const found: SegmentOnDisk[] = [];
  const headerBuf = Buffer.alloc(BLOCK_SIZE_BYTES);
  for (const name of fs.readdirSync(dir)) {
    const seq = parseSegmentFileName(name);
    if (seq === null) continue;
    const filePath = path.join(dir, name);
    const fd = fs.openSync(filePath, "r");
    try {
      const sizeBytes = fs.fstatSync(fd).size;
      const read = fs.readSync(fd, headerBuf, 0, BLOCK_SIZE_BYTES, 0);
      const header = read === BLOCK_SIZE_BYTES ? parseSegmentHeader(headerBuf) : null;
      if (header === null || header.seq !== seq || header.shardId !== shardId) {
        throw new WalCorruptionError(shardId, filePath, 0, "segment header is missing or invalid");
      }
      found.push({ header, path: filePath, sizeBytes });
    } finally {
      fs.closeSync(fd);
    }
  }
  found.sort((a, b) => a.header.seq - b.header.seq);
  for (let i = 1; i < found.length; i++) {
    const prev = found[i - 1] as SegmentOnDisk;
    const cur = found[i] as SegmentOnDisk;
    if (cur.header.seq !== prev.header.seq + 1) {
      throw new WalCorruptionError(
        shardId,
        cur.path,
        0,
        `segment ${prev.header.seq + 1} is missing`,
      );
    }
    if (cur.header.firstLsn < prev.header.firstLsn) {
      throw new WalCorruptionError(shardId, cur.path, 0, "segment first LSNs go backwards");
    }
  }
  return found;
}

function readWhole(filePath: string, buf: Buffer, sizeBytes: number): void {
  const fd = fs.openSync(filePath, "r");
  try {
    let done = 0;
    while (done < sizeBytes) {
      const n = fs.readSync(fd, buf, done, sizeBytes - done, done);
      if (n === 0) break;
      done += n;
    }
    buf.fill(0, done, sizeBytes);
  } finally {
    fs.closeSync(fd);
  }
}

/** Zeroes [fromBytes, sizeBytes) of a segment and makes it durable. */
function zeroTail(filePath: string, fromBytes: number, sizeBytes: number): void {
  const zeros = Buffer.alloc(Math.min(ZERO_CHUNK_BYTES, Math.max(sizeBytes - fromBytes, 1)));
  const fd = fs.openSync(filePath, "r+");
  try {
    let pos = fromBytes;
    while (pos < sizeBytes) {
      const n = Math.min(zeros.byteLength, sizeBytes - pos);
      fs.writeSync(fd, zeros, 0, n, pos);
      pos += n;
    }
    fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

interface Later {
  count: number;
  fromLaterBatch: boolean;
}

/** Intact records that start on a block boundary after `pos` with lsn >= expected. */
function scanLater(buf: Buffer, pos: number, sizeBytes: number, expected: number): Later {
  const later: Later = { count: 0, fromLaterBatch: false };
  for (let q = alignUp(pos + 1); q + RECORD_HEADER_BYTES <= sizeBytes; q += BLOCK_SIZE_BYTES) {
    const rec = parseRecord(buf, q, sizeBytes);
    if (rec === null || rec.lsn < expected) continue;
    later.count++;
    if (rec.batchLsn > expected) later.fromLaterBatch = true;
  }
  return later;
}

function countIntactRecords(buf: Buffer, sizeBytes: number): number {
  let count = 0;
  let pos = BLOCK_SIZE_BYTES;
  while (pos < sizeBytes) {
    const rec = parseRecord(buf, pos, sizeBytes);
    if (rec === null) {
      const next = alignUp(pos + 1);
      pos = next;
      continue;
    }
    count++;
    pos = rec.payloadOffset + rec.payloadBytes;
  }
  return count;
}

export function recoverWal(opts: RecoveryOptions): RecoveryResult {
  const all = listSegments(opts.dir, opts.shardId);
  const result: RecoveryResult = {
    segments: [],
    nextLsn: opts.checkpointLsn + 1,
    tailWriteOffsetBytes: null,
    replayedRecords: 0,
    tornTailTruncations: 0,
    droppedRecords: 0,
  };
  if (all.length === 0) return result;

  const wanted = opts.checkpointLsn + 1;
  let start = -1;
  for (let i = 0; i < all.length; i++) {
    if ((all[i] as SegmentOnDisk).header.firstLsn <= wanted) start = i;
  }
  if (start < 0) {
    const first = all[0] as SegmentOnDisk;
    throw new WalCorruptionError(
      opts.shardId,
      first.path,
      0,
      `the log starts at LSN ${first.header.firstLsn} but the store needs LSN ${wanted} onwards`,
    );
  }
  for (let i = 0; i < start; i++) {
    const seg = all[i] as SegmentOnDisk;
    const nextFirst = (all[i + 1] as SegmentOnDisk).header.firstLsn;
    result.segments.push(info(seg, nextFirst - 1));
  }

  const maxSize = Math.max(...all.map((s) => s.sizeBytes));
  const buf = Buffer.allocUnsafe(maxSize);
  const scratch: ParsedRecord = { kind: 0, lsn: 0, batchLsn: 0, payloadOffset: 0, payloadBytes: 0 };
  let segments = all;
  for (let i = start; i < segments.length; i++) {
    const seg = segments[i] as SegmentOnDisk;
    const isLast = i === segments.length - 1;
    const stopLsn = isLast
      ? Number.POSITIVE_INFINITY
      : (segments[i + 1] as SegmentOnDisk).header.firstLsn;
    readWhole(seg.path, buf, seg.sizeBytes);
    let expected = seg.header.firstLsn;
    let pos = BLOCK_SIZE_BYTES;
    while (expected < stopLsn && pos < seg.sizeBytes) {
      const rec = parseRecord(buf, pos, seg.sizeBytes, scratch);
      if (rec !== null && rec.lsn === expected) {
        if (rec.lsn > opts.checkpointLsn) {
          opts.onRecord(
            rec.kind,
            rec.lsn,
            buf.subarray(rec.payloadOffset, rec.payloadOffset + rec.payloadBytes),
          );
          result.replayedRecords++;
        }
        expected++;
        pos = rec.payloadOffset + rec.payloadBytes;
        continue;
      }
      const blockEnd = alignUp(pos);
      if (pos !== blockEnd && isZero(buf, pos, blockEnd)) {
        pos = blockEnd; // zero padding after a batch
        continue;
      }
      break;
    }

    if (!isLast) {
      if (expected === stopLsn) {
        result.segments.push(info(seg, stopLsn - 1));
        continue;
      }
      if (!opts.repair) {
        throw new WalCorruptionError(
          opts.shardId,
          seg.path,
          pos,
          `expected the record with LSN ${expected}, but the next segment starts at LSN ${stopLsn}`,
        );
      }
      for (const dropped of segments.slice(i + 1)) {
        readWhole(dropped.path, buf, dropped.sizeBytes);
        result.droppedRecords += countIntactRecords(buf, dropped.sizeBytes);
        if (opts.readOnly !== true) fs.unlinkSync(dropped.path);
      }
      readWhole(seg.path, buf, seg.sizeBytes);
      segments = segments.slice(0, i + 1);
    }

    // Last segment (possibly after repair): classify what stands at `pos`.
    const later = scanLater(buf, pos, seg.sizeBytes, expected);
    if (later.fromLaterBatch && !opts.repair) {
      throw new WalCorruptionError(
        opts.shardId,
        seg.path,
        pos,
        `record with LSN ${expected} is damaged but ${later.count} intact record(s) of later batches follow`,
      );
    }
    const atEnd = pos >= seg.sizeBytes;
    const atPos = atEnd ? null : parseRecord(buf, pos, seg.sizeBytes);
    const zeroAtPos =
      !atEnd && isZero(buf, pos, Math.min(pos + RECORD_HEADER_BYTES, seg.sizeBytes));
    const staleAtPos = atPos !== null && atPos.lsn < expected;
    const recycledLeftover =
      (seg.header.flags & SEGMENT_FLAG_RECYCLED) !== 0 && pos % BLOCK_SIZE_BYTES === 0;
    const clean = later.count === 0 && (atEnd || zeroAtPos || staleAtPos || recycledLeftover);
    if (!clean) {
      if (later.fromLaterBatch) result.droppedRecords += later.count;
      if (opts.readOnly !== true) zeroTail(seg.path, pos, seg.sizeBytes);
      result.tornTailTruncations++;
    }
    result.segments.push(info(seg, expected - 1));
    result.nextLsn = expected;
    result.tailWriteOffsetBytes = alignUp(pos);
  }
  return result;
}

function info(seg: SegmentOnDisk, lastLsn: number): SegmentInfo {
  return {
    seq: seg.header.seq,
    path: seg.path,
    firstLsn: seg.header.firstLsn,
    lastLsn,
    sizeBytes: seg.sizeBytes,
  };
}
