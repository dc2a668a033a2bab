// The workload shared by every system in `bench:peers`: 150-byte assertion records keyed by a
// 16-byte random id (32 hex in the record), spread over a bounded set of concepts.
import crypto from "node:crypto";

export const RECORD_BYTES = 150;
export const ID_BYTES = 16;
/** Concepts per write run (as bench/wrk/assert.lua: counter % 10000). */
export const CONCEPTS_PER_RUN = 10_000;
const ID_POOL_BYTES = ID_BYTES * 4096;

export interface PeerRecord {
  id: Buffer;
  concept: string;
  /** Logical timestamp: strictly increasing within a process, so "latest" is well defined. */
  ts: number;
  /** Exactly RECORD_BYTES of JSON, padded with spaces. */
  record: Buffer;
}

/** Generates records for one run (`run` names the concepts, like STEMEDB_RUN for wrk). */
export class RecordSource {
  private pool = Buffer.alloc(0);
  private poolOffset = 0;
  private counter = 0;
  private static clock = Date.now();

  constructor(private readonly run: string) {}

  /** The concept of the n-th concept slot of a run: the same names the wrk scripts use. */
  static conceptName(run: string, slot: number): string {
    return `bench/${run}/t0/c${slot}`;
  }

  next(slot?: number): PeerRecord {
    if (this.poolOffset + ID_BYTES > this.pool.length) {
      this.pool = crypto.randomBytes(ID_POOL_BYTES);
      this.poolOffset = 0;
    }
    const id = this.pool.subarray(this.poolOffset, this.poolOffset + ID_BYTES);
    this.poolOffset += ID_BYTES;
    this.counter++;
    const concept = RecordSource.conceptName(this.run, slot ?? this.counter % CONCEPTS_PER_RUN);
    const ts = ++RecordSource.clock;
    const json = JSON.stringify({
      id: id.toString("hex"),
      concept,
      agent: "bench-agent",
      value: this.counter,
      confidence: 0.5,
      ts,
    });
    const record = Buffer.alloc(RECORD_BYTES, 0x20);
    const written = record.write(json, "utf8");
    if (written < Buffer.byteLength(json)) {
      throw new Error(`record of ${Buffer.byteLength(json)} bytes exceeds ${RECORD_BYTES}`);
    }
    return { id, concept, ts, record };
  }
}
