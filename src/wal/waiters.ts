// Callbacks waiting for an LSN to become durable, in registration order, as parallel arrays
// (no object per waiter). Registration is almost always in LSN order; when it is not (a
// duplicate waiting on an earlier in-flight original), the later waiter is released with
// the one ahead of it: later, never early.

export type DurableCallback = (err: Error | null) => void;

/** Compaction threshold for the consumed prefix of the arrays. */
const COMPACT_AFTER = 4096;

export class DurableWaiters {
  private lsns: number[] = [];
  private callbacks: Array<DurableCallback | undefined> = [];
  private head = 0;

  add(lsn: number, cb: DurableCallback): void {
    this.lsns.push(lsn);
    this.callbacks.push(cb);
  }

  /** Calls back, in order, every waiter up to the first one past `durableLsn`. */
  release(durableLsn: number): void {
    this.drain((lsn) => lsn <= durableLsn, null);
  }

  /** Fails every waiter (a write or sync failed: nothing past the durable LSN is on disk). */
  failAll(err: Error): void {
    this.drain(() => true, err);
  }

  private drain(ready: (lsn: number) => boolean, err: Error | null): void {
    const lsns = this.lsns;
    const cbs = this.callbacks;
    let head = this.head;
    // Callbacks may add waiters; the loop sees them through the live length.
    while (head < lsns.length && ready(lsns[head] as number)) {
      const cb = cbs[head] as DurableCallback;
      cbs[head] = undefined;
      head++;
      cb(err);
    }
    if (head === lsns.length) {
      lsns.length = 0;
      cbs.length = 0;
      head = 0;
    } else if (head > COMPACT_AFTER) {
      lsns.splice(0, head);
      cbs.splice(0, head);
      head = 0;
    }
    this.head = head;
  }
}
