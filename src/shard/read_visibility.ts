// What a shard has let readers see, versus what its LMDB environment has committed, per
// concept bucket: LSNs in a SharedArrayBuffer the shard thread writes and the main thread
// reads.
//
// The main thread may answer a read about concept C from its own LMDB read transaction, with
// no hop to the shard, only while LMDB holds every write that touches C and that the shard
// could have shown (acknowledged, or served from its in-memory overlay). So the shard
// publishes
//   touched[b] = the highest LSN appended that touches a concept of bucket b (an insert, a
//                status change or vote on an assertion of that concept), stored at append,
//                so before the write can be durable, acknowledged or shown, and
//   committed  = the highest LSN LMDB has committed, stored after the commit is visible to
//                new read transactions,
// and a snapshot read of C is allowed when committed >= touched[bucket(C)]. Both only grow
// (LSNs a failed flush gave back are reused by later appends, which carry them past any
// stale mark). Concepts share buckets, so a write to one sends reads of its bucket-mates to
// the shard until the next commit: that costs a hop, never an answer.
//
// A concept's bucket is the low 12 bits of its 64-bit FNV-1a hash, which an assertion id
// carries in its hex digits 13..15 (routable_id.ts): the shard marks by id, without decoding.
import { conceptHashLow32 } from "../domain/shard_hash.js";

export const VISIBILITY_BUCKET_BITS = 12;
export const VISIBILITY_BUCKETS = 1 << VISIBILITY_BUCKET_BITS;
const BUCKET_MASK = VISIBILITY_BUCKETS - 1;
/** Slot 0 is `committed`; slot 1 + b is `touched[b]`. */
const COMMITTED = 0;
const SLOTS = 1 + VISIBILITY_BUCKETS;

export const READ_VISIBILITY_BYTES = SLOTS * BigInt64Array.BYTES_PER_ELEMENT;

function hexDigit(code: number): number {
  // '0'..'9' = 48..57, 'a'..'f' = 97..102 (ids are lowercase hex, checked before they get here).
  return code <= 57 ? code - 48 : code - 87;
}

/** The bucket of the concept an assertion id belongs to (its hex digits 13..15). */
export function bucketOfId(id: string): number {
  return (
    ((hexDigit(id.charCodeAt(13)) << 8) |
      (hexDigit(id.charCodeAt(14)) << 4) |
      hexDigit(id.charCodeAt(15))) &
    BUCKET_MASK
  );
}

/** The bucket of a canonical concept path. */
export function bucketOfConcept(concept: string): number {
  return conceptHashLow32(concept) & BUCKET_MASK;
}

export class ReadVisibility {
  private readonly slots: BigInt64Array;
  /** This side's (the shard's) last stores, so a store that changes nothing is skipped. */
  private readonly touchedHere = new Float64Array(VISIBILITY_BUCKETS);
  private committedHere = 0;

  constructor(readonly buffer: SharedArrayBuffer) {
    if (buffer.byteLength !== READ_VISIBILITY_BYTES)
      throw new RangeError(
        `read visibility buffer must be ${READ_VISIBILITY_BYTES} bytes, got ${buffer.byteLength}`,
      );
    this.slots = new BigInt64Array(buffer);
  }

  static create(): ReadVisibility {
    return new ReadVisibility(new SharedArrayBuffer(READ_VISIBILITY_BYTES));
  }

  /** Shard side: record `lsn`, just appended, touches the concept of assertion `id`. */
  touch(id: string, lsn: number): void {
    const b = bucketOfId(id);
    if (lsn <= (this.touchedHere[b] as number)) return;
    this.touchedHere[b] = lsn;
    Atomics.store(this.slots, 1 + b, BigInt(lsn));
  }

  /** Shard side: LMDB committed through `lsn` (new read transactions see it). */
  publishCommitted(lsn: number): void {
    if (lsn <= this.committedHere) return;
    this.committedHere = lsn;
    Atomics.store(this.slots, COMMITTED, BigInt(lsn));
  }

  /**
   * Main side: the committed LSN when LMDB holds every write to `bucket` the shard has
   * appended, else -1. The bucket is loaded first: a commit landing between the loads only
   * helps.
   */
  committedIfCurrent(bucket: number): number {
    const touched = Atomics.load(this.slots, 1 + bucket);
    const committed = Atomics.load(this.slots, COMMITTED);
    return committed >= touched ? Number(committed) : -1;
  }
}
