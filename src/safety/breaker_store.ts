// LMDB persistence of non-closed circuit breakers: database `circuit_breakers` in the meta
// environment, agent id → PersistedBreaker (JSON). Only open and half-open breakers are stored
// (closing one deletes its record), so the table is bounded by the breaker table's bound.
//
// Writes are issued when the transition happens (inside the router's synchronous request
// path); the in-memory state refuses the agent's next write at once, and the router sends the
// answer of the request that caused the transition only after save() resolved, so an open
// breaker a client has been told about survives a crash.

import type { Database, RootDatabase } from "lmdb";
import type { BreakerPersistence, PersistedBreaker } from "./circuit_breaker.js";

export class BreakerStore implements BreakerPersistence {
  private readonly db: Database<PersistedBreaker, string>;

  constructor(
    root: RootDatabase,
    private readonly onError: (err: unknown, agent: string) => void,
  ) {
    this.db = root.openDB<PersistedBreaker, string>({ name: "circuit_breakers", encoding: "json" });
  }

  /** Every stored (open or half-open) breaker. */
  load(): Array<[string, PersistedBreaker]> {
    const out: Array<[string, PersistedBreaker]> = [];
    for (const { key, value } of this.db.getRange()) out.push([key, value]);
    return out;
  }

  save(agent: string, state: PersistedBreaker | null): Promise<void> {
    const write = state === null ? this.db.remove(agent) : this.db.put(agent, state);
    return write
      .then(() => this.db.flushed)
      .then(
        () => undefined,
        (err: unknown) => this.onError(err, agent),
      );
  }
}
