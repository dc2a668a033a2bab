// On-disk format of WAL segments and records. Every multi-byte field is little-endian.
//
// Segment file (`wal-<seq:16 hex>.seg`): block 0 is the segment header; records start at
// byte 4096. Each flushed batch starts on a 4 KiB boundary and its last block is padded
// with zeros, so a block only ever holds records of one batch and an acknowledged block
// is never rewritten.
//
// Record: 32-byte header + payload.
//   0 u32 crc32c  4 u32 magic  8 u16 version  10 u16 kind  12 u32 payload_len
//   16 u64 lsn    24 u64 batch_lsn (first LSN of the batch the record was flushed in)
// crc32c covers bytes [4, 32 + payload_len): the rest of the header and the payload, in one
// pass.
import { nativeWal } from "./native.js";

export const BLOCK_SIZE_BYTES = 4096;
export const WAL_FORMAT_VERSION = 1;
export const RECORD_MAGIC = 0x524d5453; // "STMR"
export const SEGMENT_MAGIC = 0x534d5453; // "STMS"
export const RECORD_HEADER_BYTES = 32;
export const SEGMENT_HEADER_BYTES = 64;
/** Largest payload one record may carry; batches and segments are sized from it. */
export const MAX_RECORD_PAYLOAD_BYTES = 1024 * 1024;
export const MIN_SEGMENT_SIZE_BYTES = 1024 * 1024;

export const SEGMENT_FLAG_RECYCLED = 1;

export interface SegmentHeader {
  shardId: number;
  seq: number;
  firstLsn: number;
  createdAtMs: number;
  segmentSizeBytes: number;
  flags: number;
}

export function alignUp(value: number): number {
  return Math.ceil(value / BLOCK_SIZE_BYTES) * BLOCK_SIZE_BYTES;
}

export function segmentFileName(seq: number): string {
  return `wal-${seq.toString(16).padStart(16, "0")}.seg`;
}

const SEGMENT_NAME = /^wal-([0-9a-f]{16})\.seg$/;
export function parseSegmentFileName(name: string): number | null {
  const match = SEGMENT_NAME.exec(name);
  if (match === null || match[1] === undefined) return null;
  const seq = Number.parseInt(match[1], 16);
  return Number.isSafeInteger(seq) ? seq : null;
}

function writeU64(buf: Buffer, offset: number, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`u64 out of range: ${value}`);
  buf.writeUInt32LE(value % 0x1_0000_0000, offset);
  buf.writeUInt32LE(Math.floor(value / 0x1_0000_0000), offset + 4);
}

function readU64(buf: Buffer, offset: number): number {
  return buf.readUInt32LE(offset) + buf.readUInt32LE(offset + 4) * 0x1_0000_0000;
}

function recordCrc(buf: Buffer, start: number, payloadBytes: number): number {
  return nativeWal.crc32c(buf, start + 4, RECORD_HEADER_BYTES - 4 + payloadBytes);
}

/**
 * Frames one record at buf[offset..]: header then payload, CRC filled in.
 * Returns the number of bytes written. The caller guarantees capacity.
 */
export function writeRecord(
  buf: Buffer,
  offset: number,
  kind: number,
  lsn: number,
  batchLsn: number,
  payload: Uint8Array,
): number {
  buf.writeUInt32LE(RECORD_MAGIC, offset + 4);
  buf.writeUInt16LE(WAL_FORMAT_VERSION, offset + 8);
  buf.writeUInt16LE(kind, offset + 10);
  buf.writeUInt32LE(payload.byteLength, offset + 12);
  writeU64(buf, offset + 16, lsn);
  writeU64(buf, offset + 24, batchLsn);
  buf.set(payload, offset + RECORD_HEADER_BYTES);
  buf.writeUInt32LE(recordCrc(buf, offset, payload.byteLength), offset);
  return RECORD_HEADER_BYTES + payload.byteLength;
}

export interface ParsedRecord {
  kind: number;
  lsn: number;
  batchLsn: number;
  payloadOffset: number;
  payloadBytes: number;
}

/**
 * Parses and checks a record at buf[offset..limit). Returns null unless it is intact.
 * The result is `into` (default: a fresh object); replay passes one reused object so the
 * scan allocates nothing per record.
 */
export function parseRecord(
  buf: Buffer,
  offset: number,
  limit: number,
  into: ParsedRecord = { kind: 0, lsn: 0, batchLsn: 0, payloadOffset: 0, payloadBytes: 0 },
): ParsedRecord | null {
  if (offset + RECORD_HEADER_BYTES > limit) return null;
  if (buf.readUInt32LE(offset + 4) !== RECORD_MAGIC) return null;
  if (buf.readUInt16LE(offset + 8) !== WAL_FORMAT_VERSION) return null;
  const payloadBytes = buf.readUInt32LE(offset + 12);
  if (payloadBytes > MAX_RECORD_PAYLOAD_BYTES) return null;
  if (offset + RECORD_HEADER_BYTES + payloadBytes > limit) return null;
  if (recordCrc(buf, offset, payloadBytes) !== buf.readUInt32LE(offset)) return null;
  into.kind = buf.readUInt16LE(offset + 10);
  into.lsn = readU64(buf, offset + 16);
  into.batchLsn = readU64(buf, offset + 24);
  into.payloadOffset = offset + RECORD_HEADER_BYTES;
  into.payloadBytes = payloadBytes;
  return into;
}

/** True when buf[offset, end) is all zero bytes (padding or never-written space). */
export function isZero(buf: Buffer, offset: number, end: number): boolean {
  for (let i = offset; i < end; i++) if (buf[i] !== 0) return false;
  return true;
}

/** Segment header in block 0: 0 magic, 4 version, 6 flags, 8 shard, 12 crc, 16 seq, 24 first_lsn, 32 created_at_ms, 40 size. */
export function writeSegmentHeader(buf: Buffer, header: SegmentHeader): void {
  buf.fill(0, 0, BLOCK_SIZE_BYTES);
  buf.writeUInt32LE(SEGMENT_MAGIC, 0);
  buf.writeUInt16LE(WAL_FORMAT_VERSION, 4);
  buf.writeUInt16LE(header.flags, 6);
  buf.writeUInt32LE(header.shardId, 8);
  writeU64(buf, 16, header.seq);
  writeU64(buf, 24, header.firstLsn);
  writeU64(buf, 32, header.createdAtMs);
  writeU64(buf, 40, header.segmentSizeBytes);
  buf.writeUInt32LE(segmentHeaderCrc(buf), 12);
}

function segmentHeaderCrc(buf: Buffer): number {
  const head = nativeWal.crc32c(buf, 0, 12);
  return nativeWal.crc32c(buf, 16, SEGMENT_HEADER_BYTES - 16, head);
}

export function parseSegmentHeader(buf: Buffer): SegmentHeader | null {
  if (buf.byteLength < SEGMENT_HEADER_BYTES) return null;
  if (buf.readUInt32LE(0) !== SEGMENT_MAGIC) return null;
  if (buf.readUInt16LE(4) !== WAL_FORMAT_VERSION) return null;
  if (segmentHeaderCrc(buf) !== buf.readUInt32LE(12)) return null;
  return {
    flags: buf.readUInt16LE(6),
    shardId: buf.readUInt32LE(8),
    seq: readU64(buf, 16),
    firstLsn: readU64(buf, 24),
    createdAtMs: readU64(buf, 32),
    segmentSizeBytes: readU64(buf, 40),
  };
}
