// What a shard has let readers see, versus what its LMDB environment has committed: two LSNs
// in a SharedArrayBuffer the shard thread writes and the main thread reads.
//
// The main thread may answer a read from its own LMDB read transaction, with no hop to the
// shard, only while LMDB holds everything the shard could have shown: every acknowledged
// write, and every record its in-memory overlay served (those are durable: the overlay
// takes entries at the WAL's durable point). So the shard publishes
//   shown     = the WAL's durable LSN, stored before it posts any message (an ack or an
//               answer cannot reach the main thread ahead of it), and
//   committed = the highest LSN LMDB has committed, stored after the commit is visible
//               to new read transactions,
// and a snapshot read is allowed when committed >= shown. Both only grow (a failed flush
// leaves the durable LSN where it was). Under a steady write load the check fails
// often and reads go to the shard as before: the fast path never changes an answer.

/** Slots of the shared array. */
const SHOWN = 0;
const COMMITTED = 1;
const SLOTS = 2;

export const READ_VISIBILITY_BYTES = SLOTS * BigInt64Array.BYTES_PER_ELEMENT;

export class ReadVisibility {
  private readonly slots: BigInt64Array;
  /** Last values stored by this side (the shard), to skip stores that change nothing. */
  private lastShown = -1;
  private lastCommitted = -1;

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

  /** Shard side: the durable LSN, before posting a message. */
  publishShown(lsn: number): void {
    if (lsn <= this.lastShown) return;
    this.lastShown = lsn;
    Atomics.store(this.slots, SHOWN, BigInt(lsn));
  }

  /** Shard side: LMDB committed through `lsn` (new read transactions see it). */
  publishCommitted(lsn: number): void {
    if (lsn <= this.lastCommitted) return;
    this.lastCommitted = lsn;
    Atomics.store(this.slots, COMMITTED, BigInt(lsn));
  }

  /**
   * Main side: the committed LSN when LMDB holds everything the shard has shown, else -1.
   * Shown is loaded first: a commit landing between the two loads only helps.
   */
  committedIfCurrent(): number {
    const shown = Atomics.load(this.slots, SHOWN);
    const committed = Atomics.load(this.slots, COMMITTED);
    return committed >= shown ? Number(committed) : -1;
  }
}
