// What every system in `bench:peers` offers the runner. Systems run one after another; each
// is started, measured cell by cell, then stopped (in a finally) before the next one starts.
import type { CellResult } from "./driver.js";

export const BATCH_RECORDS = 1000;

export interface PeerSystem {
  name: string;
  /** How a commit is made durable, for the table's "mode" column. */
  mode: string;
  /** Concurrency levels the system can be driven at for single-record commits (null: any). */
  singleConcurrency: readonly number[] | null;
  /** One record per durable commit, `concurrency` closed-loop clients. */
  singles(concurrency: number, seconds: number): Promise<CellResult>;
  /** BATCH_RECORDS records per durable commit. */
  batches(concurrency: number, seconds: number): Promise<CellResult>;
  /** Optional point reads: writes `concepts` concepts × `versions` records, then measures. */
  reads?: {
    mode: string;
    /** Concurrency levels reads can be driven at (null: any). */
    concurrency: readonly number[] | null;
    seed(concepts: number, versions: number): Promise<void>;
    /** Latest record of a random seeded concept; CellResult.records counts lookups. */
    run(concurrency: number, seconds: number, concepts: number): Promise<CellResult>;
  };
  stop(): Promise<void>;
}

export const READ_RUN = "read";
