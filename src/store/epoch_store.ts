// Epochs (global state, owned by the main thread, in the meta environment). Creating epoch N
// closes it: it records, for every shard, the LSN reached at that instant, plus every agent's
// trust, so `as_of_epoch=N` reads see exactly that state on every shard, trust included.
// Writes accepted while epoch N is open carry `epoch: N` (the first open epoch is 1).
import type { Database, RootDatabase } from "lmdb";
import { MAX_EPOCHS } from "../domain/limits.js";

export interface EpochRecord {
  epoch: number;
  created_at: number;
  created_by: string;
  label: string | null;
  /** lsns[shard]: every record of that shard at or below it belongs to the epoch. */
  lsns: number[];
  /** Agents in the trust snapshot. */
  agents: number;
}

export class EpochLimitError extends Error {}

export class EpochStore {
  private readonly epochs: Database<EpochRecord, number>;
  private readonly trustAt: Database<number, [number, string]>;
  private last: number;

  constructor(root: RootDatabase) {
    this.epochs = root.openDB<EpochRecord, number>({ name: "epochs", encoding: "json" });
    this.trustAt = root.openDB<number, [number, string]>({
      name: "epoch_trust",
      encoding: "ordered-binary",
    });
    let last = 0;
    for (const key of this.epochs.getKeys({ reverse: true, limit: 1 })) last = key;
    this.last = last;
  }

  /** The number of the newest closed epoch (0 when none). */
  get lastClosed(): number {
    return this.last;
  }

  /** The epoch new writes belong to. */
  get open(): number {
    return this.last + 1;
  }

  /**
   * A closed epoch. One being created is not shown until it is durable (create() resolves):
   * LMDB shows a commit before its sync, and an answer as of an epoch must never change.
   */
  get(epoch: number): EpochRecord | undefined {
    return epoch <= this.last ? this.epochs.get(epoch) : undefined;
  }

  /** Trust of `agent` when `epoch` was created (undefined: the agent had no evidence then). */
  trustAtEpoch(epoch: number, agent: string): number | undefined {
    return this.trustAt.get([epoch, agent]);
  }

  /** Oldest first, after `after` (exclusive), at most `limit`. */
  list(after: number, limit: number): EpochRecord[] {
    const out: EpochRecord[] = [];
    if (after >= this.last) return out;
    const range = { start: after + 1, end: this.last + 1, limit };
    for (const { value } of this.epochs.getRange(range)) out.push(value);
    return out;
  }

  /** Durable before it resolves. Callers serialize creation (one at a time). */
  async create(
    rec: Omit<EpochRecord, "epoch" | "agents">,
    trust: Iterable<[string, number]>,
  ): Promise<EpochRecord> {
    if (this.last >= MAX_EPOCHS) {
      throw new EpochLimitError(`at most ${MAX_EPOCHS} epochs can be created`);
    }
    const epoch = this.last + 1;
    let agents = 0;
    const full: EpochRecord = { ...rec, epoch, agents: 0 };
    await this.epochs.transaction(() => {
      for (const [agent, value] of trust) {
        this.trustAt.put([epoch, agent], value);
        agents++;
      }
      full.agents = agents;
      this.epochs.put(epoch, full);
    });
    await this.epochs.flushed;
    this.last = epoch;
    return full;
  }
}
